# boot.scr source (mkimage -T script): the A/B slot choice with a boot counter.
#
# Env (uboot.env on the FAT partition, read and written by the agent with libubootenv):
#   boot_part          A or B: the slot to boot (anything else counts as A)
#   upgrade_available  1 while a new slot is on trial: every boot counts in bootcount
#   bootcount          trial boots so far; past bootlimit the other slot boots, upgrade_available=0
#   bootlimit          trial boots allowed (default 3)
#   ota_extra_args     appended to the kernel command line (tests)
# The kernel gets root=<slot partition> and ota.slot=a|b. If uboot.env is missing or its CRC is bad,
# U-Boot runs its default env (distro boot finds this script): the defaults below then boot A.
# setexpr works in hex; bootcount and bootlimit stay below 10, where hex and decimal agree.

if test -z "${bootlimit}"; then setenv bootlimit 3; fi
if test -z "${bootcount}"; then setenv bootcount 0; fi
if test "${boot_part}" != "B"; then setenv boot_part A; fi

if test "${upgrade_available}" = "1"; then
    setexpr bootcount ${bootcount} + 1
    if test ${bootcount} -gt ${bootlimit}; then
        echo "OTA-UBOOT: slot ${boot_part} failed ${bootlimit} trial boots: falling back"
        if test "${boot_part}" = "B"; then setenv boot_part A; else setenv boot_part B; fi
        setenv upgrade_available 0
    fi
    saveenv
fi

if test "${boot_part}" = "B"; then
    setenv ota_root /dev/mmcblk0p3
    setenv ota_slot b
else
    setenv ota_root /dev/mmcblk0p2
    setenv ota_slot a
fi
echo "OTA-UBOOT: boot_part=${boot_part} bootcount=${bootcount} upgrade_available=${upgrade_available}"

# Set by distro boot; our own bootcmd sets them too.
if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi
if test -z "${distro_bootpart}"; then setenv distro_bootpart 1; fi

# Image.gz is loaded high and booti decompresses it to kernel_comp_addr_r (2 MiB; the Image is
# 32 MiB plus bss): the DTB and initramfs sit well above both.
setenv ota_kernel_addr 0x10000000
setenv kernel_comp_addr_r 0x00200000
setenv kernel_comp_size 0x04000000
setenv ota_fdt_addr 0x08000000
setenv ota_initrd_addr 0x08200000
setenv bootargs "console=ttyAMA0,115200 root=${ota_root} rootwait panic=1 ota.slot=${ota_slot} ${ota_extra_args}"
load ${devtype} ${devnum}:${distro_bootpart} ${ota_kernel_addr} Image.gz
load ${devtype} ${devnum}:${distro_bootpart} ${ota_fdt_addr} bcm2837-rpi-3-b.dtb
load ${devtype} ${devnum}:${distro_bootpart} ${ota_initrd_addr} initrd.img
booti ${ota_kernel_addr} ${ota_initrd_addr}:${filesize} ${ota_fdt_addr}
echo "OTA-UBOOT: booti failed"
