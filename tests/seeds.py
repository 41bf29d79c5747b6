"""The seed page's two example machines (``shared/seed/qemu-sgx.md``), as QEMU options for
``shlex.split``, shared by every test that needs them. The NUMA example adds ``-smp 4``: QEMU
7.2 refuses ``cpus=0-1``/``2-3`` with the default single vCPU."""

SEED_SINGLE = """-machine pc -m 4G
  -cpu host,+sgx-provisionkey
  -object memory-backend-epc,id=mem1,size=64M,prealloc=on
  -M sgx-epc.0.memdev=mem1,sgx-epc.0.node=0"""

SEED_NUMA = """-machine q35 -m 4G -smp 4
  -cpu host,+sgx-provisionkey
  -object memory-backend-ram,size=2G,host-nodes=0,policy=bind,id=node0
  -object memory-backend-epc,id=mem0,size=64M,prealloc=on,host-nodes=0,policy=bind
  -numa node,nodeid=0,cpus=0-1,memdev=node0
  -object memory-backend-ram,size=2G,host-nodes=1,policy=bind,id=node1
  -object memory-backend-epc,id=mem1,size=28M,prealloc=on,host-nodes=1,policy=bind
  -numa node,nodeid=1,cpus=2-3,memdev=node1
  -M sgx-epc.0.memdev=mem0,sgx-epc.0.node=0,sgx-epc.1.memdev=mem1,sgx-epc.1.node=1"""
