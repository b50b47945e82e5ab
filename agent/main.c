/* ota-agent: everything lives in the libraries; see src/cli/cli.c. */
#include "ota/cli.h"

int main(int argc, char **argv)
{
    return ota_cli_main(argc, argv);
}
