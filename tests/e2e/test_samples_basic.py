"""The basic samples (examples/hello, sealing, attestation) end to end: each sample's ``run()``
on a booted machine, the prebuilt enclaves against their sources, the in-enclave sealing
against ``cryptography``'s AES-GCM under the seal key the platform derives, the identity an
enclave reports against the one computed from its ELF, and a sample run through ``vsgx run``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sgx_user import machine, signing_key

import vsgx
from vsgx.arch import ATTRIBUTES, KEYREQUEST, REPORT, REPORTBODY, TARGETINFO, AttributesFlags
from vsgx.arch.constants import HARDCODED_PKCS1_5_PADDING, KeyName, KeyPolicy
from vsgx.cpu.processor import SgxProcessor
from vsgx.crypto import derive_key, egetkey_dependencies
from vsgx.crypto.keys import EnclaveIdentity, report_key_dependencies, report_mac
from vsgx.crypto.sigstruct import mrsigner
from vsgx.sdk import Enclave, EnclaveConfig, EnclaveImage
from vsgx.sdk.sample import CheckFailed, load_sample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLES = ("hello", "sealing", "attestation")
SEALED_HEADER = 560
"""sgx_sealed_data_t: KEYREQUEST (512), plain_text_offset, reserved, payload_size, reserved,
payload_tag (16), then the payload."""
CLI_MACHINE = ["-machine", "q35", "-m", "1G", "-cpu", "host", "-object",
               "memory-backend-epc,id=e0,size=32M", "-M", "sgx-epc.0.memdev=e0,sgx-epc.0.node=0"]
"""The machine the samples' docstrings tell users to start."""


def sample(name: str) -> ModuleType:
    """examples/NAME/app.py imported as a module (as ``vsgx demo`` does)."""
    return load_sample(EXAMPLES / name / "app.py")


@pytest.fixture(scope="module")
def vm() -> Iterator[vsgx.Machine]:
    vm = machine()
    try:
        yield vm
    finally:
        vm.close()


def platform_of(vm: vsgx.Machine) -> SgxProcessor:
    assert vm.processor is not None
    return vm.processor


def identity(enclave: Enclave) -> EnclaveIdentity:
    """The SECS identity EINIT gives ``enclave``, from its configuration and SIGSTRUCT."""
    cfg = enclave.image.config
    return EnclaveIdentity(
        attributes=ATTRIBUTES(cfg.attribute_flags | AttributesFlags.INIT, cfg.xfrm),
        miscselect=cfg.miscselect, mrenclave=enclave.mrenclave, mrsigner=enclave.mrsigner,
        isvprodid=cfg.isvprodid, isvsvn=cfg.isvsvn)


# -- the samples as `vsgx demo` runs them ---------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_contract(name: str) -> None:
    module = sample(name)
    assert module.__doc__ and module.__doc__.splitlines()[0].strip()
    assert callable(module.run)
    for file in ("enclave.c", "enclave.toml", "enclave.elf", "README.md"):
        assert (EXAMPLES / name / file).is_file(), file
    config = EnclaveConfig.from_toml((EXAMPLES / name / "enclave.toml").read_text())
    assert EnclaveImage.load(EXAMPLES / name / "enclave.elf").config == config


def test_hello(vm: vsgx.Machine) -> None:
    rows = dict(sample("hello").run(vm.guest.spawn(), signing_key()))
    assert rows["greet: ocall 'print' received"] == \
        repr("Hello, world! (from inside the enclave)")
    assert rows["greet: the ocall's return value came back"] == "39"
    assert rows["add(40, 2)"] == "42"
    assert rows["add(2^64 - 1, 2) wraps modulo 2^64"] == "1"


def test_sealing(vm: vsgx.Machine) -> None:
    rows = dict(sample("sealing").run(vm.guest.spawn(), signing_key()))
    unsealed, mac = "unsealed", "refused (MAC mismatch)"
    assert rows["same enclave, MRENCLAVE blob"] == unsealed
    assert rows["same enclave, MRSIGNER blob"] == unsealed
    assert rows["same signer, other MRENCLAVE: MRSIGNER blob"] == unsealed
    assert rows["same signer, other MRENCLAVE: MRENCLAVE blob"] == mac
    assert rows["other signer, same MRENCLAVE: MRENCLAVE blob"] == unsealed
    assert rows["other signer, same MRENCLAVE: MRSIGNER blob"] == mac
    assert rows["a blob with one ciphertext bit flipped"] == mac
    assert rows["ISVSVN 2 unseals ISVSVN 1's blob"] == unsealed
    assert rows["ISVSVN 1 unseals ISVSVN 2's blob"] == "refused (EGETKEY: ISVSVN too high)"


def test_attestation(vm: vsgx.Machine) -> None:
    rows = dict(sample("attestation").run(vm.guest.spawn(), signing_key()))
    assert rows["the genuine REPORT"] == "verified"
    assert rows["a REPORT with one bit of REPORTDATA flipped"] == "rejected (MAC mismatch)"
    assert rows["a REPORT targeted at the prover itself"] == "rejected (MAC mismatch)"
    assert rows["the genuine REPORT, expecting another MRENCLAVE"] == \
        "rejected (unexpected MRENCLAVE)"
    assert rows["the same REPORT again"] == "rejected (nonce not outstanding: a replay)"


def test_a_failed_check_raises(vm: vsgx.Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample fails loudly: here the attestation sample expects a payload the prover did not
    send."""
    module = sample("attestation")
    original = module.prove

    def wrong_payload(prover: Enclave, target: bytes, nonce: bytes) -> bytes:
        report: bytes = original(prover, target, nonce)
        monkeypatch.setattr(module, "PAYLOAD", bytes(32))  # not what the prover sent
        return report

    monkeypatch.setattr(module, "prove", wrong_payload)
    with pytest.raises(CheckFailed, match="does not carry"):
        module.run(vm.guest.spawn(), signing_key())


# -- sealing against cryptography ----------------------------------------------------------


def seal_key(vm: vsgx.Machine, enclave: Enclave, request: KEYREQUEST) -> bytes:
    """The key EGETKEY gives ``enclave`` for ``request``, derived outside the enclave from the
    platform's fused secrets (SDM EGETKEY, SEAL_KEY)."""
    cpu = platform_of(vm)
    deps = egetkey_dependencies(request, identity(enclave), cpu.platform, cpu.boot)
    return derive_key(cpu.platform, deps)


@pytest.mark.parametrize("policy", [KeyPolicy.MRENCLAVE, KeyPolicy.MRSIGNER])
def test_sealed_blob_opens_with_aes_gcm(vm: vsgx.Machine, policy: KeyPolicy) -> None:
    secret = b"sealed inside, opened by cryptography" * 3
    path = EXAMPLES / "sealing" / "enclave.elf"
    with Enclave.load(vm.guest.spawn(), path, key=signing_key()) as enclave:
        blob = bytearray(enclave.ecall("sealed_size", len(secret)))
        assert len(blob) == SEALED_HEADER + len(secret)
        assert enclave.ecall("seal", int(policy), secret, len(secret), blob, len(blob)) == 0
        request = KEYREQUEST.from_bytes(bytes(blob[:KEYREQUEST.SIZE]))
        assert request.keyname == KeyName.SEAL_KEY and request.keypolicy == policy
        assert request.isvsvn == enclave.image.config.isvsvn
        assert request.cpusvn == platform_of(vm).platform.cpusvn
        assert any(request.keyid)
        text_offset = int.from_bytes(blob[512:516], "little")
        payload_size = int.from_bytes(blob[528:532], "little")
        assert text_offset == payload_size == len(secret)
        tag, ciphertext = bytes(blob[544:560]), bytes(blob[560:])
        key = seal_key(vm, enclave, request)
        assert AESGCM(key).decrypt(bytes(12), ciphertext + tag, None) == secret

        # The other way round: a blob sealed by cryptography opens inside the enclave.
        other = b"sealed outside, opened inside"
        request2 = KEYREQUEST(keyname=KeyName.SEAL_KEY, keypolicy=policy,
                              isvsvn=request.isvsvn, cpusvn=request.cpusvn,
                              attributemask=request.attributemask, keyid=bytes(range(32)),
                              miscmask=request.miscmask)
        sealed = AESGCM(seal_key(vm, enclave, request2)).encrypt(bytes(12), other, None)
        blob2 = (request2.to_bytes() + len(other).to_bytes(4, "little") + bytes(12)
                 + len(other).to_bytes(4, "little") + bytes(12) + sealed[-16:] + sealed[:-16])
        out = bytearray(len(other))
        assert enclave.ecall("unseal", blob2, len(blob2), out, len(out)) == 0
        assert out == other


# -- identity: what the enclave reports against what its ELF says ----------------------------


def test_reported_identity_matches_the_image(vm: vsgx.Machine) -> None:
    path = EXAMPLES / "attestation" / "enclave.elf"
    image = EnclaveImage.load(path)
    proc = vm.guest.spawn()
    with Enclave.load(proc, path, key=signing_key()) as prover, \
            Enclave.load(proc, path, key=signing_key(),
                         config=image.config.with_changes(heap_size=32 << 10)) as verifier:
        target, nonce = bytearray(TARGETINFO.SIZE), bytearray(32)
        assert verifier.ecall("challenge", target, nonce) == 0
        raw = bytearray(REPORT.SIZE)
        assert prover.ecall("prove", bytes(target), bytes(nonce), bytes(32), raw) == 0
        report = REPORT.from_bytes(bytes(raw))
        body: REPORTBODY = report.body
        assert body.mrenclave == image.measure() == prover.sigstruct.enclavehash
        assert body.mrenclave == image.sign(signing_key()).enclavehash
        assert body.mrsigner == mrsigner(signing_key().public_key().public_numbers().n
                                         .to_bytes(384, "little"))
        assert (body.isvprodid, body.isvsvn) == (image.config.isvprodid, image.config.isvsvn)
        assert body.attributes == identity(prover).attributes
        assert body.reportdata == bytes(nonce) + bytes(32)

        # The MAC the verifier checked inside is the CMAC under the REPORT key derived for
        # its TARGETINFO (SDM EREPORT).
        cpu = platform_of(vm)
        deps = report_key_dependencies(TARGETINFO.from_bytes(bytes(target)),
                                       HARDCODED_PKCS1_5_PADDING, cpu.platform, report.keyid)
        assert report_mac(derive_key(cpu.platform, deps), body.to_bytes()) == report.mac
        assert TARGETINFO.from_bytes(bytes(target)).measurement == verifier.mrenclave


# -- the command line -----------------------------------------------------------------------


def test_vsgx_run_hello() -> None:
    """The command the sample's docstring gives, as a user types it."""
    app = EXAMPLES / "hello" / "app.py"
    done = subprocess.run([sys.executable, "-m", "vsgx.cli", "run", *CLI_MACHINE, "--", str(app)],
                          capture_output=True, text=True, timeout=120, check=False)
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    rows = [line.split("  ", 1) for line in done.stdout.splitlines()]
    rows = [(what.strip(), outcome.strip()) for what, outcome in rows]
    assert ("greet: ocall 'print' received",
            "'Hello, world! (from inside the enclave)'") in rows, output
    assert ("add(40, 2)", "42") in rows, output
