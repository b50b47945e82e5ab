# boot.scr source (mkimage -T script): the A/B slot choice with a boot counter.
#
# Env (uboot.env on the FAT partition, read and written by the agent with libubootenv); the
# names are the A/B contract of common/include/ota/abboot.h (docs/DESIGN.md), shared with the
# agent and the simulator's bootloader model:
#   boot_part          A or B: the slot to boot (anything else counts as A)
#   upgrade_available  1 while a new slot is on trial: every boot counts in bootcount
#   bootcount          trial boots so far; past bootlimit the other slot boots, upgrade_available=0
#                      and bootcount stays past bootlimit: the fallback slot's boots go on counting
#                      until the agent settles (bootcount=0); past 2 x bootlimit: recovery mode
#   bootlimit          trial boots allowed (default 3; at most 4, see setexpr below)
#   ota_extra_args     appended to the kernel command line (tests)
# The kernel gets root=<slot partition> and ota.slot=a|b. If uboot.env is missing or its CRC is bad,
# U-Boot runs its default env (distro boot finds this script): the defaults below then boot A.
# setexpr works in hex; bootcount and bootlimit stay below 10, where hex and decimal agree.

# Both speed-ups of this script are for QEMU only and run only when the env says ota_qemu=1 (the
# image's initial env does; a real Pi's firmware and card need neither).
# Speed only (the slot choice below is untouched): under QEMU the Pi's cores 1-3 wait for the kernel
# in QEMU's spin-table loop, whose wfe does not sleep under TCG, so three host threads spin and starve
# U-Boot's SD reads and the kernel's early boot (measured: QEMU at 180% CPU, 1.5 MiB/s). This moves
# them into a loop that sleeps in wfi, woken every 1 ms by its own virtual timer, and watches the
# same spin-table slots (0xe0, 0xe8, 0xf0: the DTB's cpu-release-addr) for the kernel's release.
# It sits at 0xc00, inside the DTB's /memreserve/ of page 0 (QEMU's own loop is at 0x300), and runs
# with the MMU off at EL2. Source (aarch64-linux-gnu-as):
#     mrs x6, mpidr_el1; and x6, x6, #3; mov x5, #0xd8
#     str xzr, [x5, x6, lsl #3]              // our slot held this loop's address: clear it
#     mov x7, #0x40000000; add x7, x7, #0x40 // local intc: core N timer control at 0x40000040+4N
#     mov w10, #8; str w10, [x7, x6, lsl #2] // route our virtual timer (CNTVIRQ) to our IRQ line
#     mov x9, #19200; mov x8, #1             // 1 ms at 19.2 MHz; CNTV_CTL: enabled, not masked
# 1:  ldr x4, [x5, x6, lsl #3]; cbnz x4, 2f
#     msr cntv_tval_el0, x9; msr cntv_ctl_el0, x8; isb; wfi; b 1b
# 2:  msr cntv_ctl_el0, xzr; isb; mov x0..x3, xzr; br x4   // timer off, enter the kernel as QEMU does
if test "${ota_qemu}" = "1" && test "${devtype}" != "virtio"; then # raspi3b only (virt: -smp via PSCI)
    mw.l 0xc00 d53800a6
    mw.l 0xc04 924004c6
    mw.l 0xc08 d2801b05
    mw.l 0xc0c f82678bf
    mw.l 0xc10 d2a80007
    mw.l 0xc14 910100e7
    mw.l 0xc18 5280010a
    mw.l 0xc1c b82678ea
    mw.l 0xc20 d2896009
    mw.l 0xc24 d2800028
    mw.l 0xc28 f86678a4
    mw.l 0xc2c b50000c4
    mw.l 0xc30 d51be309
    mw.l 0xc34 d51be328
    mw.l 0xc38 d5033fdf
    mw.l 0xc3c d503207f
    mw.l 0xc40 17fffffa
    mw.l 0xc44 d51be33f
    mw.l 0xc48 d5033fdf
    mw.l 0xc4c aa1f03e0
    mw.l 0xc50 aa1f03e1
    mw.l 0xc54 aa1f03e2
    mw.l 0xc58 aa1f03e3
    mw.l 0xc5c d61f0080
    mw.l 0xe0 c00
    mw.l 0xe8 c00
    mw.l 0xf0 c00
fi

if test -z "${bootlimit}"; then setenv bootlimit 3; fi
if test -z "${bootcount}"; then setenv bootcount 0; fi
if test "${boot_part}" != "B"; then setenv boot_part A; fi

# The A/B rule (common/include/ota/abboot.h, docs/DESIGN.md "The A/B boot contract"): a trial boot
# counts; past bootlimit the other slot boots (the fallback). A fallback leaves bootcount past
# bootlimit with upgrade_available=0, and while it stays there (the agent has not yet settled the
# rollback, which writes bootcount=0) the fallback slot's boots count too: past 2 x bootlimit both
# slots have failed and the kernel boots in recovery mode (ota.recovery=1: the initramfs stops
# there and waits for a reflash). Recovery writes nothing: every later boot is recovery again.
# A healthy boot (upgrade_available=0, bootcount 0) counts nothing and writes nothing.
# (ota_reclimit is unset again before saveenv: it is not part of the stored env.)
setexpr ota_reclimit ${bootlimit} + ${bootlimit}
ota_recovery=0
ota_save=0
if test "${upgrade_available}" = "1"; then
    setexpr bootcount ${bootcount} + 1
    if test ${bootcount} -gt ${bootlimit}; then
        echo "OTA-UBOOT: slot ${boot_part} failed ${bootlimit} trial boots: falling back"
        if test "${boot_part}" = "B"; then setenv boot_part A; else setenv boot_part B; fi
        setenv upgrade_available 0
    fi
    ota_save=1
elif test ${bootcount} -gt ${ota_reclimit}; then
    ota_recovery=1
elif test ${bootcount} -gt ${bootlimit}; then
    setexpr bootcount ${bootcount} + 1
    if test ${bootcount} -gt ${ota_reclimit}; then ota_recovery=1; fi
    ota_save=1
fi
setenv ota_reclimit
if test "${ota_save}" = "1"; then saveenv; fi
if test "${ota_recovery}" = "1"; then
    echo "OTA-UBOOT: slot ${boot_part} failed ${bootlimit} boots after the fallback: recovery mode"
fi

# The slots are partitions 2 (A) and 3 (B) of ${ota_rootdev}: /dev/mmcblk0p on the Pi, /dev/vda on
# QEMU's virt machine (where U-Boot's disk is virtio); the env may name another prefix.
if test -z "${ota_rootdev}"; then
    if test "${devtype}" = "virtio"; then setenv ota_rootdev /dev/vda; else setenv ota_rootdev /dev/mmcblk0p; fi
fi
if test "${boot_part}" = "B"; then
    setenv ota_root ${ota_rootdev}3
    setenv ota_slot b
else
    setenv ota_root ${ota_rootdev}2
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
# Speed only, QEMU only (images/README.md "Boot time"): no self-tests of the kernel's crypto
# algorithms at boot (cryptomgr.notests: 0.3-0.5 s under TCG), and the linear map with block
# mappings (rodata=on instead of Debian's default rodata=full, which maps all RAM with 4 KiB pages:
# every TLB miss then walks a deeper table in QEMU's software MMU). run-qemu and ota-sim pass the same
# two to the virt board.
setenv ota_speed_args
# rng_core.default_quality: the hardware RNG (bcm2835-rng, built into the local kernel) credits the
# random pool; otherwise the agent's first request waited for "crng init done" (3-4 s).
if test "${ota_qemu}" = "1"; then setenv ota_speed_args "cryptomgr.notests rodata=on rng_core.default_quality=1000"; fi
setenv bootargs "console=ttyAMA0,115200 root=${ota_root} rootwait panic=1 ota.slot=${ota_slot} ${ota_speed_args} ${ota_extra_args}"
if test "${ota_recovery}" = "1"; then setenv bootargs "${bootargs} ota.recovery=1"; fi

# On QEMU's virt machine (U-Boot's disk is virtio) RAM starts at 1 GiB, and the DTB is QEMU's own,
# which QEMU puts at the start of RAM for a -bios boot (U-Boot's env, loaded again in its preboot,
# has no fdtcontroladdr): the same layout 1 GiB up, no DTB file (the Pi's is on the FAT).
setenv ota_fdtfile bcm2837-rpi-3-b.dtb
if test "${devtype}" = "virtio"; then
    setenv ota_kernel_addr 0x50000000
    setenv kernel_comp_addr_r 0x40200000
    setenv ota_fdt_addr 0x40000000
    setenv ota_initrd_addr 0x48200000
    setenv ota_fdtfile
fi

# Speed only: U-Boot reads the card through sdhost (mmc 0) by PIO, about 2 MiB/s under QEMU; the
# Arasan SDHCI controller (mmc 1) reads it at about 3 MiB/s. QEMU (7.2, bcm2835_gpio) wires the card
# to SDHCI while GPIO 48-53 are all function 0 (its reset state) and to sdhost while they are all
# ALT0 (4), where U-Boot's pinctrl put them. For the loads the six pins go to 0 (GPFSEL4 0x3f200010
# holds 48-49, GPFSEL5 0x3f200014 holds 50-53: 4 less in each 3-bit field), and back to ALT0 before
# the kernel, whose sdhost driver then finds the card as before. If mmc 1 does not see the card
# (another QEMU, real hardware), the pins go back and mmc 0 loads.
ota_loaddev=${devnum}
if test "${ota_qemu}" = "1" && test "${devtype}" = "mmc" && test "${devnum}" = "0"; then
    setexpr.l ota_fsel4 *0x3f200010
    setexpr.l ota_fsel5 *0x3f200014
    setexpr ota_v ${ota_fsel4} - 0x24000000
    mw.l 0x3f200010 ${ota_v}
    setexpr ota_v ${ota_fsel5} - 0x924
    mw.l 0x3f200014 ${ota_v}
    if mmc dev 1; then
        ota_loaddev=1
    else
        mw.l 0x3f200010 ${ota_fsel4}
        mw.l 0x3f200014 ${ota_fsel5}
        mmc dev 0
    fi
fi
load ${devtype} ${ota_loaddev}:${distro_bootpart} ${ota_kernel_addr} Image.gz
if test -n "${ota_fdtfile}"; then load ${devtype} ${ota_loaddev}:${distro_bootpart} ${ota_fdt_addr} ${ota_fdtfile}; fi
load ${devtype} ${ota_loaddev}:${distro_bootpart} ${ota_initrd_addr} initrd.img
if test "${ota_loaddev}" != "${devnum}"; then
    mw.l 0x3f200010 ${ota_fsel4}
    mw.l 0x3f200014 ${ota_fsel5}
fi

# The Pi's watchdog, armed right before the kernel so that a kernel that hangs before userspace is
# reset and counted like any failed boot (bootcount above). The PM block: WDOG (0x3f100024) takes
# the time in 1/65536 s (at most 0xfffff, 16 s), RSTC (0x3f10001c) with WRCFG = full reset (0x20)
# starts it; each write carries the password 0x5a000000. Debian's bcm2835_wdt (the initramfs loads
# it) finds it running at probe and keeps pinging it until userspace opens /dev/watchdog, then
# systemd takes it over (RuntimeWatchdogSec, rootfs overlay system.conf.d/20-watchdog.conf).
# ota_watchdog=0 in the env leaves it off (a test that the harness notices a hang without it).
# QEMU (7.2, bcm2835_powermgt) only stores WDOG and resets at once on that RSTC write, and would
# reset as well when systemd starts the watchdog: under QEMU (ota_qemu=1, or the board serial QEMU
# 7.2 does not model: U-Boot sets serial# to zeros, e.g. with a corrupt env) nothing is written,
# systemd's watchdog is off (systemd.watchdog_sec=0) and the harness counts down from this line.
# ota_fault_hang=a|b (tests, ota_qemu=1 only): that slot's kernel hangs (ota.test=hang: the
# initramfs sets kernel.panic=0 and exits; the kernel panics and stays there, no reset but the
# watchdog's) on every boot that counts (bootcount above 0: from the update's trial reboot on, so
# never the factory boot before it; not in recovery mode), or only while bootcount <=
# ota_fault_hang_max if set.
ota_emul=0
if test "${ota_qemu}" = "1" || test "${serial#}" = "0000000000000000"; then ota_emul=1; fi
if test "${ota_watchdog}" != "0"; then
    if test "${ota_emul}" = "1"; then
        echo "OTA-UBOOT: watchdog armed: 15 s (QEMU: counted by the harness)"
    else
        mw.l 0x3f100024 0x5a0f0000
        setexpr.l ota_v *0x3f10001c \& 0xffffffcf
        setexpr ota_v ${ota_v} \| 0x5a000020
        mw.l 0x3f10001c ${ota_v}
        echo "OTA-UBOOT: watchdog armed: 15 s"
    fi
fi
if test "${ota_emul}" = "1"; then setenv bootargs "${bootargs} systemd.watchdog_sec=0"; fi
if test "${ota_qemu}" = "1" && test "${ota_fault_hang}" = "${ota_slot}"; then
    if test ${bootcount} -gt 0 && test "${ota_recovery}" != "1"; then
        if test -z "${ota_fault_hang_max}" || test ${bootcount} -le ${ota_fault_hang_max}; then
            setenv bootargs "${bootargs} ota.test=hang"
        fi
    fi
fi
booti ${ota_kernel_addr} ${ota_initrd_addr}:${filesize} ${ota_fdt_addr}
echo "OTA-UBOOT: booti failed"
