/* ota-server: thin entry point; everything is in the otasrv library (cli.c). */
#include "otasrv/cli.h"

int main(int argc, char **argv)
{
    return otasrv_cli_main(argc, argv);
}
