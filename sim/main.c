/* ota-sim: thin entry point; everything is in the otasim library. */
#include "otasim/cli.h"

int main(int argc, char **argv)
{
    return otasim_cli_main(argc, argv);
}
