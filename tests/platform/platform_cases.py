"""Malformed QEMU command lines and the exact message each one gets, shared by the parser's
table test and the oracle test that replays the QEMU-verified ones on real
``qemu-system-x86_64``.

``source`` says where the expected message comes from:

* ``qemu`` — observed on QEMU 7.2.22 (Debian ``qemu-system-x86`` 1:7.2+dfsg-7+deb12u18);
  ``test_platform_qemu_oracle.py`` re-checks every one against the installed binary.
* ``reference`` — EPC-specific errors QEMU cannot show on a host without ``/dev/sgx_vepc``
  (it refuses ``memory-backend-epc`` first); the strings are from
  ``shared/reference/qemu-virtual-sgx.md`` section 7, or inferred from the property type
  where marked so there.
* ``vsgx`` — something QEMU has and vsgx refuses by name (vsgx's own wording).

The message is the first stderr line without the ``qemu-system-x86_64: `` prefix.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    args: str  # shell words, split with shlex
    message: str
    source: str


J = '{"qom-type":"memory-backend-ram","id":"x",'
EPC = "-object memory-backend-epc,id=mem1,size=64M"

MALFORMED: list[Case] = [
    # command line
    Case("-nosuchoption", "-nosuchoption: invalid option", "qemu"),
    Case("-incoming", "-incoming: requires an argument", "qemu"),
    Case("-M", "-M: requires an argument", "qemu"),
    # -m
    Case("-m 4X", "-m 4X: Parameter 'size' expects a non-negative number below 2^64", "qemu"),
    Case("-m -1", "-m -1: Parameter 'size' expects a non-negative number below 2^64", "qemu"),
    Case("-m 1.5", "-m 1.5: Parameter 'size' expects a non-negative number below 2^64", "qemu"),
    Case("-m 1e3M", "-m 1e3M: Parameter 'size' expects a non-negative number below 2^64",
         "qemu"),
    Case("-m 16E", "-m 16E: Value '16E' is out of range for parameter 'size'", "qemu"),
    Case("-m 1G,foo=1", "-m 1G,foo=1: Invalid parameter 'foo'", "qemu"),
    Case("-m 4G,slots=x", "-m 4G,slots=x: Parameter 'slots' expects a number", "qemu"),
    Case("-m 4G,maxmem=x",
         "-m 4G,maxmem=x: Parameter 'maxmem' expects a non-negative number below 2^64", "qemu"),
    Case("-m size=1G,slots=2", "slots specified but no max-size", "qemu"),
    Case("-m 4G -m slots=1", "slots specified but no max-size", "qemu"),
    Case("-m 1G,maxmem=512M",
         "invalid value of maxmem: maximum memory size (0x20000000) must be at least the "
         "initial memory size (0x40000000)", "qemu"),
    Case("-m 1G,slots=2,maxmem=1G",
         "invalid value of maxmem: memory slots were specified but maximum memory size "
         "(0x40000000) is equal to the initial memory size (0x40000000)", "qemu"),
    # -object, QemuOpts form
    Case("-object memory-backend-ram,id=a,size=1M -object memory-backend-ram,id=a,size=1M",
         "-object memory-backend-ram,id=a,size=1M: Duplicate ID 'a' for object", "qemu"),
    Case("-object memory-backend-ram,id=a", "-object memory-backend-ram,id=a: Parameter "
         "'size' is missing", "qemu"),
    Case("-object memory-backend-ram,size=1M",
         "-object memory-backend-ram,size=1M: Parameter 'id' is missing", "qemu"),
    Case("-object memory-backend-ram,id=a,size=-1",
         "-object memory-backend-ram,id=a,size=-1: Parameter 'size' expects a size value",
         "qemu"),
    Case("-object memory-backend-ram,id=a,size=1kb",
         "-object memory-backend-ram,id=a,size=1kb: Parameter 'size' expects a size value",
         "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,prealloc=maybe",
         "-object memory-backend-ram,id=a,size=1M,prealloc=maybe: Parameter 'prealloc' "
         "expects 'on' or 'off'", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,prealloc=ON",
         "-object memory-backend-ram,id=a,size=1M,prealloc=ON: Parameter 'prealloc' expects "
         "'on' or 'off'", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,share=nah",
         "-object memory-backend-ram,id=a,size=1M,share=nah: Parameter 'share' expects 'on' "
         "or 'off'", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,bogus=1",
         "-object memory-backend-ram,id=a,size=1M,bogus=1: Invalid parameter 'bogus'", "qemu"),
    Case("-object memory-backend-ram,id=m,size=0",
         "property 'size' of memory-backend-ram doesn't take value '0'", "qemu"),
    Case("-object memory-backend-ram,id=1a,size=1M",
         "-object memory-backend-ram,id=1a,size=1M: Parameter 'id' expects an identifier",
         "qemu"),
    Case("-object memory-backend-ram,id=a,,b,size=1M",
         "-object memory-backend-ram,id=a,,b,size=1M: Parameter 'id' expects an identifier",
         "qemu"),
    Case("-object memory-backend-ram,,id=a,size=1M",
         "-object memory-backend-ram,,id=a,size=1M: Parameter 'qom-type' does not accept "
         "value 'memory-backend-ram,id=a'", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,,",
         "-object memory-backend-ram,id=a,size=1M,,: Parameter 'size' expects a size value",
         "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,=x",
         "-object memory-backend-ram,id=a,size=1M,=x: Invalid parameter ''", "qemu"),
    Case("-object nosuchtype,id=x",
         "-object nosuchtype,id=x: Parameter 'qom-type' does not accept value 'nosuchtype'",
         "qemu"),
    Case("-object id=a,size=1M", "-object id=a,size=1M: Parameter 'qom-type' is missing",
         "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,policy=bogus",
         "-object memory-backend-ram,id=a,size=1M,policy=bogus: Parameter 'policy' does not "
         "accept value 'bogus'", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,policy=bind",
         "host-nodes must be set for policy bind", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,host-nodes=0",
         "host-nodes must be empty for policy default, or you should explicitly specify a "
         "policy other than default", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,host-nodes=1-0,policy=bind",
         "-object memory-backend-ram,id=a,size=1M,host-nodes=1-0,policy=bind: Parameter "
         "'host-nodes' expects a uint64 value or range", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,host-nodes=200,policy=bind",
         "Invalid host-nodes value: 200", "qemu"),
    Case("-object memory-backend-ram,id=a,size=1M,host-nodes=70000,policy=bind",
         "-object memory-backend-ram,id=a,size=1M,host-nodes=70000,policy=bind: Parameter "
         "'null' expects uint16_t", "qemu"),
    # -object, JSON form
    Case("-object memory-backend-ram,id=a,size=1M "
         "-object '{\"qom-type\":\"memory-backend-ram\",\"id\":\"a\",\"size\":1048576}'",
         "attempt to add duplicate property 'a' to object (type 'container')", "qemu"),
    Case(f"-object '{J}\"size\":\"abc\"}}'",
         f"-object {J}\"size\":\"abc\"}}: Parameter 'size' expects uint64", "qemu"),
    Case(f"-object '{J}\"size\":1.5}}'",
         f"-object {J}\"size\":1.5}}: Parameter 'size' expects uint64", "qemu"),
    Case(f"-object '{J[:-1]}'", f"-object {J[:-1]}: JSON parse error, premature EOI", "qemu"),
    Case(f"-object '{J}\"size\":1048576,\"prealloc\":\"on\"}}'",
         f"-object {J}\"size\":1048576,\"prealloc\":\"on\"}}: Invalid parameter type for "
         "'prealloc', expected: boolean", "qemu"),
    Case(f"-object '{J}\"size\":1048576,\"bogus\":1}}'",
         f"-object {J}\"size\":1048576,\"bogus\":1}}: Parameter 'bogus' is unexpected", "qemu"),
    Case(f"-object '{J}\"size\":1048576,\"id\":\"y\"}}'",
         f"-object {J}\"size\":1048576,\"id\":\"y\"}}: JSON parse error, duplicate key", "qemu"),
    Case(f"-object '{J}\"size\":1048576}}x'",
         f"-object {J}\"size\":1048576}}x: Expecting at most one JSON value", "qemu"),
    Case("-object '{\"qom-type\":\"memory-backend-ram\",\"size\":1048576}'",
         "-object {\"qom-type\":\"memory-backend-ram\",\"size\":1048576}: Parameter 'id' is "
         "missing", "qemu"),
    Case("-object '{\"qom-type\":\"memory-backend-ram\",\"id\":5,\"size\":1048576}'",
         "-object {\"qom-type\":\"memory-backend-ram\",\"id\":5,\"size\":1048576}: Invalid "
         "parameter type for 'id', expected: string", "qemu"),
    Case("-object '{\"qom-type\":\"memory-backend-ram\",\"id\":\"1a\",\"size\":1048576}'",
         "Parameter 'id' expects an identifier", "qemu"),
    Case(f"-object '{J}\"size\":0}}'",
         "property 'size' of memory-backend-ram doesn't take value '0'", "qemu"),
    # -machine
    Case("-M nosuchmachine", "unsupported machine type", "qemu"),
    Case("-M pc,bogus=1", "Property 'pc-i440fx-7.2-machine.bogus' not found", "qemu"),
    Case("-M q35,bogus=1", "Property 'pc-q35-7.2-machine.bogus' not found", "qemu"),
    Case("-M pc,sgx-epc.0.memdev=mem1", "Parameter 'sgx-epc.0.node' is missing", "qemu"),
    Case("-M pc,sgx-epc.0.node=0", "Parameter 'sgx-epc.0.memdev' is missing", "qemu"),
    Case("-M pc,sgx-epc.0.memdev=mem9,sgx-epc.0.node=0", "Device 'mem9' not found", "qemu"),
    Case("-M pc,sgx-epc.1.memdev=mem1,sgx-epc.1.node=0",
         "-M pc,sgx-epc.1.memdev=mem1,sgx-epc.1.node=0: Parameter 'sgx-epc.0' missing", "qemu"),
    Case("-M pc,sgx-epc.0.memdev=mem1,sgx-epc.0.node=x",
         "Parameter 'sgx-epc.0.node' expects integer", "qemu"),
    Case("-M pc,sgx-epc.0.memdev=mem1,sgx-epc.0.bogus=1,sgx-epc.0.node=0",
         "Parameter 'sgx-epc.0.bogus' is unexpected", "qemu"),
    Case("-M pc,sgx-epc.memdev=mem1",
         "Invalid parameter type for 'sgx-epc', expected: array", "qemu"),
    Case("-M pc,sgx-epc.0=x", "Invalid parameter type for 'sgx-epc.0', expected: object",
         "qemu"),
    Case("-M pc,sgx-epc.0.memdev.x=1,sgx-epc.0.node=0",
         "Parameters 'sgx-epc.0.memdev.*' are unexpected", "qemu"),
    Case("-M pc,sgx-epc.0.memdev=a,sgx-epc.0.node=0 -M sgx-epc.1.memdev=b,sgx-epc.1.node=0",
         "-M sgx-epc.1.memdev=b,sgx-epc.1.node=0: Parameters 'sgx-epc.*' used inconsistently",
         "qemu"),
    Case("-object memory-backend-ram,id=a,size=4M -M pc,sgx-epc.0.memdev=a,sgx-epc.0.node=0",
         "Invalid parameter type for 'memdev', expected: memory-backend-epc", "qemu"),
    Case("-M pc,sgx-epc.0.memdev", "-M pc,sgx-epc.0.memdev: Expected '=' after parameter "
         "'sgx-epc.0.memdev'", "qemu"),
    Case("-M q35,,x", "-M q35,,x: Invalid parameter ''", "qemu"),
    Case("-M pc,a..b=1", "-M pc,a..b=1: Invalid parameter 'a..b'", "qemu"),
    # -smp
    Case("-smp x", "Parameter 'smp.cpus' expects integer", "qemu"),
    Case("-smp 4,bogus=1", "Parameter 'smp.bogus' is unexpected", "qemu"),
    Case("-smp 4,sockets=2,cores=3",
         "Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (2) * "
         "dies (1) * cores (3) * threads (0) != maxcpus (4)", "qemu"),
    Case("-smp 1,threads=2",
         "Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (1) * "
         "dies (1) * cores (0) * threads (2) != maxcpus (1)", "qemu"),
    Case("-smp 4,maxcpus=2",
         "Invalid CPU topology: maxcpus must be equal to or greater than smp: sockets (1) * "
         "dies (1) * cores (2) * threads (1) == maxcpus (2) < smp_cpus (4)", "qemu"),
    Case("-smp 300", "Invalid SMP CPUs 300. The max CPUs supported by machine "
         "'pc-i440fx-7.2' is 255", "qemu"),
    Case("-M q35 -smp 289", "Invalid SMP CPUs 289. The max CPUs supported by machine "
         "'pc-q35-7.2' is 288", "qemu"),
    # -cpu
    Case("-cpu nosuchmodel", "unable to find CPU model 'nosuchmodel'", "qemu"),
    Case("-cpu ''", "-cpu option cannot be empty", "qemu"),
    Case("-cpu qemu64,+nosuchflag", "Property 'qemu64-x86_64-cpu.nosuchflag' not found",
         "qemu"),
    Case("-cpu qemu64,sgx=maybe", "can't apply global qemu64-x86_64-cpu.sgx=maybe: Parameter "
         "'sgx' expects 'on' or 'off'", "qemu"),
    Case("-cpu qemu64,+sgx=on", "Property 'qemu64-x86_64-cpu.sgx=on' not found", "qemu"),
    Case("-cpu qemu64,sgx_lc=on", "can't apply global qemu64-x86_64-cpu.sgx-lc=on: Property "
         "'qemu64-x86_64-cpu.sgx-lc' not found", "qemu"),
    Case("-cpu qemu64,-nosuch2,+nosuch", "Property 'qemu64-x86_64-cpu.nosuch' not found",
         "qemu"),
    # -numa
    Case("-m 4G -object memory-backend-ram,size=2G,id=n0 -numa node,nodeid=0,memdev=n0",
         "total memory for NUMA nodes (0x80000000) should equal RAM size (0x100000000)", "qemu"),
    Case("-numa node,nodeid=0,cpus=0-1,memdev=mem0",
         "-numa node,nodeid=0,cpus=0-1,memdev=mem0: CPU index (1) should be smaller than "
         "maxcpus (1)", "qemu"),
    Case("-m 4G -numa node,nodeid=0,memdev=n9",
         "-numa node,nodeid=0,memdev=n9: memdev=n9 is ambiguous", "qemu"),
    Case("-numa node,nodeid=0 -numa node,nodeid=0",
         "-numa node,nodeid=0: Duplicate NUMA nodeid: 0", "qemu"),
    Case("-numa node,nodeid=1 -m 1G", "numa: Node ID missing: 0", "qemu"),
    Case("-numa node,nodeid=128", "-numa node,nodeid=128: Max number of NUMA nodes reached: "
         "128", "qemu"),
    Case("-numa node,nodeid=70000",
         "-numa node,nodeid=70000: Parameter 'nodeid' expects uint16_t", "qemu"),
    Case("-numa node,nodeid=x", "-numa node,nodeid=x: Parameter 'nodeid' expects a uint64 "
         "value", "qemu"),
    Case("-numa node,nodeid=0,bogus=1", "-numa node,nodeid=0,bogus=1: Invalid parameter "
         "'bogus'", "qemu"),
    Case("-numa bogus", "-numa bogus: Parameter 'type' does not accept value 'bogus'", "qemu"),
    Case("-numa node,nodeid=0,mem=1G", "-numa node,nodeid=0,mem=1G: Parameter -numa node,mem "
         "is not supported by this machine type", "qemu"),
    Case("-numa node,cpus=0 -numa node,cpus=0 -smp 4",
         "-numa node,cpus=0: CPU is already assigned to node-id: 0", "qemu"),
    Case("-m 4G -object memory-backend-ram,size=2G,id=n0 -numa node,nodeid=0,memdev=n0 "
         "-numa node,nodeid=1,memdev=n0", "memory backend n0 can't be used multiple times.",
         "qemu"),
    # -qmp, -name
    Case("-qmp tcp:127.0.0.1", "-qmp tcp:127.0.0.1: parse error: tcp:127.0.0.1", "qemu"),
    Case("-qmp tcp:127.0.0.1:4444,server=on,wait=off,bogus=1",
         "-qmp tcp:127.0.0.1:4444,server=on,wait=off,bogus=1: Invalid parameter 'bogus'",
         "qemu"),
    Case("-qmp unix:/nonexistent/q.sock,server=maybe",
         "-qmp unix:/nonexistent/q.sock,server=maybe: Parameter 'server' expects 'on' or 'off'",
         "qemu"),
    Case("-qmp foo:bar", "-qmp foo:bar: 'foo:bar' is not a valid char driver", "qemu"),
    Case("-qmp tcp:127.0.0.1:x,server=on,wait=off",
         "-qmp tcp:127.0.0.1:x,server=on,wait=off: address resolution failed for "
         "127.0.0.1:x: Servname not supported for ai_socktype", "qemu"),
    Case("-name guest=foo,bogus=1", "-name guest=foo,bogus=1: Invalid parameter 'bogus'",
         "qemu"),
    # EPC-specific (reference)
    Case("-object memory-backend-epc,id=mem1,size=0",
         "property 'size' of memory-backend-epc doesn't take value '0'", "reference"),
    Case(f"{EPC} -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0,sgx-epc.1.memdev=mem1,"
         "sgx-epc.1.node=0", "can't use already busy memdev: mem1", "reference"),
    Case(f"-m 64M {EPC} -numa node,memdev=mem1 -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0",
         "can't use already busy memdev: mem1", "reference"),
    Case(f"{EPC} -M sgx-epc.0.memdev=mem9,sgx-epc.0.node=0", "Device 'mem9' not found",
         "reference"),
    Case(f"{EPC} -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=-1",
         "Parameter 'node' expects uint32_t", "reference"),
    # refused by vsgx
    Case("-device foo", "-device foo: option '-device' is not supported by vsgx", "vsgx"),
    Case("-drive file=x", "-drive file=x: option '-drive' is not supported by vsgx", "vsgx"),
    Case("-enable-kvm", "-enable-kvm: option '-enable-kvm' is not supported by vsgx", "vsgx"),
    Case("disk.img", "disk.img: a disk image argument (-hda) is not supported by vsgx", "vsgx"),
    Case("-M none", "machine type 'none' is not supported by vsgx", "vsgx"),
    Case("-M pc,usb=off", "machine property 'usb' is not supported by vsgx", "vsgx"),
    Case("-object memory-backend-file,id=f,size=1M,mem-path=/tmp",
         "-object memory-backend-file,id=f,size=1M,mem-path=/tmp: object type "
         "'memory-backend-file' is not supported by vsgx", "vsgx"),
    Case("-object memory-backend-ram,id=a,size=1M,merge=off",
         "-object memory-backend-ram,id=a,size=1M,merge=off: memory-backend-ram property "
         "'merge' is not supported by vsgx", "vsgx"),
    Case("-cpu qemu64,+avx2", "CPU feature 'avx2' is not supported by vsgx", "vsgx"),
    Case("-numa dist,src=0,dst=0,val=10",
         "-numa dist,src=0,dst=0,val=10: -numa dist is not supported by vsgx", "vsgx"),
    Case("-qmp unix:/tmp/q.sock",
         "-qmp unix:/tmp/q.sock: a -qmp client socket (server=off) is not supported by vsgx",
         "vsgx"),
    Case("-qmp stdio", "-qmp stdio: a -qmp character device other than unix: or tcp: is not "
         "supported by vsgx", "vsgx"),
    Case("-name foo,process=bar",
         "-name foo,process=bar: -name parameter 'process' is not supported by vsgx", "vsgx"),
]
