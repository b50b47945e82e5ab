/* ota-server: thin entry point; everything is in the otasrv library (cli.c). */
#include "otasrv/cli.h"

int main(int argc, char **argv)
{
    return ota_srv_cli_main(argc, argv);
}
