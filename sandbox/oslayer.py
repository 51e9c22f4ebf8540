"""The operating-system layer under the language policy: what a worker gives up before any cell runs.

The policy (policy.py, guards.py) is one layer; a single gap in it would hand a cell the host's files,
network and processes. So each worker, after the fork and after it has opened everything it needs
(its channel to the host, the context's mmap, /proc/self/statm for its memory cap; every module a cell
may import is already imported in the zygote), drops for good:

* new privileges (`PR_SET_NO_NEW_PRIVS`: no setuid binary or file capability can raise them);
* the network: a fresh, empty network namespace (`unshare(CLONE_NEWNET)`, with `CLONE_NEWUSER` when not
  root), where the kernel allows it;
* system calls, through a seccomp filter built here as classic BPF (no dependency, tested in
  tests/sandbox): creating sockets, execve/execveat, new processes (clone without CLONE_THREAD, fork,
  vfork; clone3 answers ENOSYS so threads fall back to clone, whose flags can be checked), ptrace and
  other processes' memory, mount and namespaces, signals to any process but the worker itself, and
  every way to open, create, remove, rename or change a file. A refused call fails with EPERM, so a
  cell gets a plain PermissionError rather than a dead worker.

Each layer that cannot be set (another OS or architecture, a kernel without seccomp, namespaces refused
in a container) is reported as missing, with why, and the worker runs without it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

ON = "on"

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_CLONE_THREAD = 0x00010000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_EPERM = _RET_ERRNO | errno.EPERM
_ENOSYS = _RET_ERRNO | errno.ENOSYS

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

# x86_64 system call numbers refused outright
_REFUSED = {
    "open": 2,
    "socket": 41,
    "socketpair": 53,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "truncate": 76,
    "ftruncate": 77,
    "rename": 82,
    "mkdir": 83,
    "rmdir": 84,
    "creat": 85,
    "link": 86,
    "unlink": 87,
    "symlink": 88,
    "chmod": 90,
    "chown": 92,
    "lchown": 94,
    "ptrace": 101,
    "rt_sigqueueinfo": 129,
    "utime": 132,
    "mknod": 133,
    "pivot_root": 155,
    "chroot": 161,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "init_module": 175,
    "delete_module": 176,
    "setxattr": 188,
    "lsetxattr": 189,
    "removexattr": 197,
    "lremovexattr": 198,
    "tkill": 200,
    "utimes": 235,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "openat": 257,
    "mkdirat": 258,
    "mknodat": 259,
    "fchownat": 260,
    "futimesat": 261,
    "unlinkat": 263,
    "renameat": 264,
    "linkat": 265,
    "symlinkat": 266,
    "fchmodat": 268,
    "unshare": 272,
    "utimensat": 280,
    "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "renameat2": 316,
    "bpf": 321,
    "execveat": 322,
    "userfaultfd": 323,
    "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "openat2": 437,
    "mount_setattr": 442,
}
_CLONE, _KILL, _TGKILL, _CLONE3 = 56, 62, 234, 435


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(pid: int) -> bytes:
    """The filter for worker `pid`, as packed `struct sock_filter`s (x86_64 only).

    Layout: a wrong architecture or an x32 call is refused; each refused number returns EPERM;
    clone passes only with CLONE_THREAD; kill and tgkill pass only aimed at `pid`; the rest passes."""
    arg0 = 16  # offsetof(struct seccomp_data, args[0]), its low 32 bits on little-endian
    allow, deny = _insn(_RET_K, _RET_ALLOW), _insn(_RET_K, _EPERM)
    body = [
        _insn(_LD_W_ABS, 0),
        _insn(_JGE_K, _X32_SYSCALL_BIT, 0, 1),
        deny,
    ]
    for number in _REFUSED.values():
        body += [_insn(_JEQ_K, number, 0, 1), deny]
    body += [_insn(_JEQ_K, _CLONE3, 0, 1), _insn(_RET_K, _ENOSYS)]
    # clone: allowed with CLONE_THREAD (a thread), refused otherwise (a process)
    body += [
        _insn(_JEQ_K, _CLONE, 0, 4),
        _insn(_LD_W_ABS, arg0),
        _insn(_JSET_K, _CLONE_THREAD, 0, 1),
        allow,
        deny,
    ]
    # kill(pid, ...) and tgkill(pid, ...): only at the worker itself
    body += [
        _insn(_JEQ_K, _KILL, 1, 0),
        _insn(_JEQ_K, _TGKILL, 0, 4),
        _insn(_LD_W_ABS, arg0),
        _insn(_JEQ_K, pid, 0, 1),
        allow,
        deny,
        allow,
    ]
    head = [
        _insn(_LD_W_ABS, 4),  # offsetof(struct seccomp_data, arch)
        _insn(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        deny,
    ]
    return b"".join(head + body)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: object) -> None:
    function = getattr(_libc(), name)
    if function(*(ctypes.c_ulong(a) if isinstance(a, int) else a for a in args)) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


LAYERS = ("no_new_privs", "network_namespace", "seccomp")


def drop(enabled: bool = True) -> dict[str, str]:
    """Set every layer this system allows, in the calling (single-threaded) worker.

    Returns each layer's state: "on", or why it is missing. `enabled=False` (benchmarks and tests
    only) sets none of them."""
    if not enabled or not sys.platform.startswith("linux"):
        why = "turned off" if not enabled else f"unavailable on {sys.platform}"
        return dict.fromkeys(LAYERS, why)
    layers = {}
    try:
        _call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        layers["no_new_privs"] = ON
    except OSError as exc:
        layers["no_new_privs"] = f"refused by the kernel ({exc.strerror})"
    layers["network_namespace"] = _unshare_network()
    layers["seccomp"] = _install_seccomp() if layers["no_new_privs"] == ON else "needs no_new_privs"
    return layers


def _unshare_network() -> str:
    flags = [_CLONE_NEWNET] if os.geteuid() == 0 else [_CLONE_NEWUSER | _CLONE_NEWNET]
    try:
        _call("unshare", flags[0])
    except OSError as exc:
        return f"refused by the kernel ({exc.strerror})"
    return ON


def _install_seccomp() -> str:
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"no filter for the {platform.machine()} architecture"
    program = seccomp_program(os.getpid())
    fprog = _SockFprog(len(program) // 8, program)
    try:
        _call("prctl", _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)
    except OSError as exc:
        return f"refused by the kernel ({exc.strerror})"
    return ON


def missing(layers: dict[str, str]) -> list[str]:
    """'name (why)' for each layer that is not on."""
    return [f"{name} ({state})" for name, state in layers.items() if state != ON]
