"""The seed page's two example machines (``shared/seed/qemu-sgx.md``), as QEMU options for
``shlex.split``, shared by every test that needs them. The NUMA example adds ``-smp 4``: QEMU
7.2 refuses ``cpus=0-1``/``2-3`` with the default single vCPU."""

from vsgx.cli.demo import SEED_NUMA as DEMO_MACHINE

SEED_SINGLE = """-machine pc -m 4G
  -cpu host,+sgx-provisionkey
  -object memory-backend-epc,id=mem1,size=64M,prealloc=on
  -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0"""

SEED_NUMA = DEMO_MACHINE
"""The NUMA example, which ``vsgx demo`` boots (one copy of it, in the demo)."""
