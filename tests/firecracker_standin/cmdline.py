"""The guest kernel's command line, read as Linux reads it to start init.

Firecracker checks ``boot_args`` when it is PUT (``linux_loader::cmdline``: printable ASCII,
shorter than 2048 bytes with its NUL) and, at boot, appends ``root=/dev/vda ro`` (``rw``
for a writable root drive) for the root drive (``vmm_config/boot_source.rs``,
``append_root_device_cmdline``); without ``boot_args`` it uses its
``DEFAULT_KERNEL_CMDLINE``. Linux then (``init/main.c``) consumes the parameters it knows
(``__setup``/core parameters such as ``console=``, ``root=``, ``ro``, ``panic=``; anything
with a dot is a module parameter), gives init every other ``key=value`` as an environment
variable and every other plain word as an argument, and everything after ``--`` as
arguments; init's environment starts as ``HOME=/`` and ``TERM=linux``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_BOOT_ARGS", "MAX_BYTES", "KernelCommandLine", "parse", "validation_error"]

DEFAULT_BOOT_ARGS = "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"
"""Firecracker's ``DEFAULT_KERNEL_CMDLINE``, used when ``boot_args`` is not given."""

MAX_BYTES = 2048
"""x86_64's ``CMDLINE_MAX_SIZE``, the terminating NUL included."""

_KNOWN = frozenset(
    """
    acpi apic apparmor audit cgroup_disable cgroup_enable cgroup_no_v1 clocksource console
    crashkernel debug default_hugepagesz devtmpfs earlycon earlyprintk elevator fsck highres
    hugepages hugepagesz idle ignore_loglevel init initrd intel_iommu iommu ip ipv6 isolcpus
    kaslr keep_bootcon l1tf log_buf_len loglevel lpj lsm maxcpus mce mds mem memmap mitigations
    nmi_watchdog no_timer_check nohz nohz_full noapic noinitrd nokaslr nolapic nomodule nopti
    noreplace-smp nosmp nosoftlockup nowatchdog nr_cpus oops panic panic_on_warn pause_on_oops
    pci pti quiet ramdisk_size random rcu_nocbs rdinit reboot resume retbleed ro root rootdelay
    rootflags rootfstype rootwait rw security selinux slub_debug softlockup_panic
    spec_store_bypass_disable spectre_v2 spectre_v2_user swiotlb sysrq_always_enabled
    transparent_hugepage tsc tsx vga video vsyscall
    """.split()  # noqa: SIM905 - a word list reads better as words
)
"""Parameters Linux consumes itself (a usual x86_64 config): they never reach init."""


@dataclass
class KernelCommandLine:
    """What the kernel makes of a command line."""

    init: str | None = None
    init_argv: list[str] = field(default_factory=list)
    init_env: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    root_readonly: bool = True
    rootfstypes: list[str] = field(default_factory=list)
    consoles: list[str] = field(default_factory=list)
    serial_uarts: int | None = None
    panic_s: int = 0

    @property
    def serial_console(self) -> bool:
        """Whether ``/dev/console`` is the serial port Firecracker copies to its stdout."""
        return bool(self.consoles) and self.consoles[-1].startswith("ttyS0") and self.serial_uarts != 0


def validation_error(text: str) -> str | None:
    """Why Firecracker refuses ``text`` as ``boot_args``, or ``None``."""
    if any(not " " <= char <= "~" for char in text):
        return "String contains a non-printable ASCII character."
    if len(text) >= MAX_BYTES:
        return "Inserting string would make command line too long."
    return None


def _words(text: str) -> list[str]:
    """Split as the kernel's ``next_arg``: on spaces outside double quotes, quotes dropped."""
    words: list[str] = []
    current: list[str] = []
    quoted = started = False
    for char in text:
        if char == '"':
            quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words


def parse(boot_args: str | None, root_args: str = "") -> KernelCommandLine:
    """The kernel's reading of ``boot_args`` (default: Firecracker's) plus Firecracker's ``root_args``."""
    text = DEFAULT_BOOT_ARGS if boot_args is None else boot_args
    words = _words(text)
    after: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, after = words[:cut], words[cut + 1 :]
    words += _words(root_args)
    line = KernelCommandLine(init_env={"HOME": "/", "TERM": "linux"})
    for word in words:
        key, equals, value = word.partition("=")
        if key == "init" and equals:
            line.init = value
        elif key == "root" and equals:
            line.root = value
        elif key in ("ro", "rw") and not equals:
            line.root_readonly = key == "ro"
        elif key == "rootfstype" and equals:
            line.rootfstypes = [name for name in value.split(",") if name]
        elif key == "console" and equals:
            line.consoles.append(value)
        elif key == "8250.nr_uarts" and equals:
            line.serial_uarts = int(value) if value.isdigit() else None
        elif key == "panic" and equals:
            try:
                line.panic_s = int(value, 0)
            except ValueError:
                line.panic_s = 0
        elif key in _KNOWN or "." in key:
            continue  # the kernel's own, or a module's
        elif equals:
            line.init_env[key] = value
        else:
            line.init_argv.append(word)
    line.init_argv += after
    return line
