"""The trusted runtime's C cryptography (AES-128, AES-128-CMAC, AES-128-GCM) built for the host.

The three sources under ``src/vsgx/sdk/runtime/crypto`` are compiled once per module into a shared
library and called through ctypes; results are checked against the NIST/RFC vectors and, with
hypothesis, against the ``cryptography`` package. GCM with IVs shorter than 8 bytes (which
``cryptography`` refuses) is checked against a small pure-Python SP 800-38D reference that is
itself checked against ``cryptography`` for the lengths it accepts. A last test compiles the
sources with the enclave's freestanding flags and inspects the objects.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from hypothesis import given, settings
from hypothesis import strategies as st

import vsgx

RUNTIME = Path(vsgx.__file__).parent / "sdk" / "runtime"
SOURCES = [RUNTIME / "crypto" / name for name in ("aes.c", "gcm.c", "cmac.c")]
INCLUDE = RUNTIME / "include"
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
ENCLAVE_FLAGS = ["-ffreestanding", "-fPIE", "-nostdlib", "-fno-stack-protector", "-O2",
                 "-std=c11"]

BUF = ctypes.c_char_p
SIZE = ctypes.c_size_t


class RuntimeCrypto:
    """Typed wrappers around the shared library's exported functions."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        self.lib = lib
        lib.vsgx_aes128_init.argtypes = [ctypes.c_void_p, BUF]
        lib.vsgx_aes128_init.restype = None
        lib.vsgx_aes128_encrypt_block.argtypes = [ctypes.c_void_p, BUF, ctypes.c_void_p]
        lib.vsgx_aes128_encrypt_block.restype = None
        lib.vsgx_aes128_cmac.argtypes = [BUF, BUF, SIZE, ctypes.c_void_p]
        lib.vsgx_aes128_cmac.restype = None
        for name in ("vsgx_aes128_gcm_encrypt", "vsgx_aes128_gcm_decrypt"):
            fn = getattr(lib, name)
            fn.argtypes = [BUF, BUF, SIZE, BUF, SIZE, ctypes.c_void_p, SIZE, ctypes.c_void_p,
                           ctypes.c_void_p]
            fn.restype = ctypes.c_int
        lib.vsgx_memequal_ct.argtypes = [BUF, BUF, SIZE]
        lib.vsgx_memequal_ct.restype = ctypes.c_int

    def aes_block(self, key: bytes, block: bytes) -> bytes:
        ks = ctypes.create_string_buffer(44 * 4)
        out = ctypes.create_string_buffer(16)
        self.lib.vsgx_aes128_init(ks, key)
        self.lib.vsgx_aes128_encrypt_block(ks, block, out)
        return out.raw

    def cmac(self, key: bytes, msg: bytes) -> bytes:
        mac = ctypes.create_string_buffer(16)
        self.lib.vsgx_aes128_cmac(key, msg, len(msg), mac)
        return mac.raw

    def gcm_encrypt(self, key: bytes, iv: bytes, aad: bytes, pt: bytes) -> tuple[bytes, bytes]:
        ct = ctypes.create_string_buffer(len(pt))
        tag = ctypes.create_string_buffer(16)
        rc = self.lib.vsgx_aes128_gcm_encrypt(key, iv, len(iv), aad, len(aad),
                                              ctypes.c_char_p(pt), len(pt), ct, tag)
        assert rc == 0
        return ct.raw, tag.raw

    def gcm_decrypt(self, key: bytes, iv: bytes, aad: bytes, ct: bytes,
                    tag: bytes) -> tuple[int, bytes]:
        """Returns the status and the output buffer, pre-filled with 0xA5 so zeroing shows."""
        pt = ctypes.create_string_buffer(b"\xa5" * len(ct), len(ct))
        tag_buf = ctypes.create_string_buffer(tag, 16)
        rc = self.lib.vsgx_aes128_gcm_decrypt(key, iv, len(iv), aad, len(aad),
                                              ctypes.c_char_p(ct), len(ct), pt, tag_buf)
        return rc, pt.raw

    def memequal_ct(self, a: bytes, b: bytes) -> int:
        assert len(a) == len(b)
        return int(self.lib.vsgx_memequal_ct(a, b, len(a)))


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> RuntimeCrypto:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the runtime crypto for the host")
    out = tmp_path_factory.mktemp("runtime-crypto") / "libvsgxcrypto.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-std=c11", *WARNINGS, "-I", str(INCLUDE),
                    "-o", str(out), *map(str, SOURCES)], check=True)
    return RuntimeCrypto(out)


# --- Pure-Python SP 800-38D reference, for the IV lengths cryptography refuses --------------

R = 0xE1 << 120


def gf_mult(x: int, y: int) -> int:
    """SP 800-38D Algorithm 1: the product in GF(2^128), blocks as big-endian integers."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ R if v & 1 else v >> 1
    return z


def ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = gf_mult(y ^ int.from_bytes(data[i:i + 16]), h)
    return y


def pad16(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def gcm_reference(key: bytes, iv: bytes, aad: bytes, pt: bytes) -> tuple[bytes, bytes]:
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = int.from_bytes(ecb.update(bytes(16)))
    if len(iv) == 12:
        j0 = iv + b"\x00\x00\x00\x01"
    else:
        j0 = ghash(h, pad16(iv) + (8 * len(iv)).to_bytes(16)).to_bytes(16)
    prefix, ctr = j0[:12], int.from_bytes(j0[12:])
    blocks = b"".join(prefix + ((ctr + i) % 2**32).to_bytes(4)
                      for i in range(1, (len(pt) + 15) // 16 + 1))
    stream = ecb.update(blocks)
    ct = bytes(a ^ b for a, b in zip(pt, stream, strict=False))
    lengths = (8 * len(aad)).to_bytes(8) + (8 * len(ct)).to_bytes(8)
    s = ghash(h, pad16(aad) + pad16(ct) + lengths)
    tag = int.from_bytes(ecb.update(j0)) ^ s
    return ct, tag.to_bytes(16)


def gcm_cryptography(key: bytes, iv: bytes, aad: bytes, pt: bytes) -> tuple[bytes, bytes]:
    """cryptography's GCM: AESGCM for 12-byte IVs, the generic GCM mode for 8..128 bytes."""
    if len(iv) == 12:
        out = AESGCM(key).encrypt(iv, pt, aad)
        return out[:-16], out[-16:]
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(pt) + enc.finalize()
    return ct, enc.tag


def gcm_expected(key: bytes, iv: bytes, aad: bytes, pt: bytes) -> tuple[bytes, bytes]:
    return gcm_cryptography(key, iv, aad, pt) if len(iv) >= 8 else gcm_reference(key, iv, aad, pt)


def cmac_expected(key: bytes, msg: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


# --- AES-128 ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "pt", "ct"), [
    # FIPS 197 Appendix C.1 and Appendix B.
    ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
     "3925841d02dc09fbdc118597196a0b32"),
])
def test_aes_fips197(rt: RuntimeCrypto, key: str, pt: str, ct: str) -> None:
    assert rt.aes_block(bytes.fromhex(key), bytes.fromhex(pt)).hex() == ct


def test_aes_key_schedule_fips197(rt: RuntimeCrypto) -> None:
    """FIPS 197 Appendix A.1: the last round key of 2b7e1516..., as big-endian words."""
    ks = (ctypes.c_uint32 * 44)()
    rt.lib.vsgx_aes128_init(ks, bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))
    assert list(ks[40:]) == [0xD014F9A8, 0xC9EE2589, 0xE13F0CC8, 0xB6630CA6]


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_aes_matches_cryptography(rt: RuntimeCrypto, key: bytes, block: bytes) -> None:
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert rt.aes_block(key, block) == ecb.update(block)


def test_aes_encrypt_in_place(rt: RuntimeCrypto) -> None:
    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    ks = ctypes.create_string_buffer(44 * 4)
    buf = ctypes.create_string_buffer(bytes.fromhex("00112233445566778899aabbccddeeff"), 16)
    rt.lib.vsgx_aes128_init(ks, key)
    rt.lib.vsgx_aes128_encrypt_block(ks, ctypes.cast(buf, ctypes.c_char_p), buf)
    assert buf.raw.hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


# --- CMAC ------------------------------------------------------------------------------------

CMAC_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
CMAC_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize(("length", "expected"), [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_cmac_rfc4493(rt: RuntimeCrypto, length: int, expected: str) -> None:
    assert rt.cmac(CMAC_KEY, CMAC_MESSAGE[:length]).hex() == expected


def test_cmac_null_empty_message(rt: RuntimeCrypto) -> None:
    mac = ctypes.create_string_buffer(16)
    rt.lib.vsgx_aes128_cmac(CMAC_KEY, None, 0, mac)
    assert mac.raw.hex() == "bb1d6929e95937287fa37d129b756746"


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=300))
def test_cmac_matches_cryptography(rt: RuntimeCrypto, key: bytes, msg: bytes) -> None:
    assert rt.cmac(key, msg) == cmac_expected(key, msg)


# --- GCM -------------------------------------------------------------------------------------

K3 = "feffe9928665731c6d6a8f9467308308"
P3 = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
A4 = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
IV6 = ("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
       "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b")

# McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Test Cases 1-6 (AES-128).
GCM_VECTORS = [
    pytest.param("00" * 16, "00" * 12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a",
                 id="tc1"),
    pytest.param("00" * 16, "00" * 12, "", "00" * 16, "0388dace60b6a392f328c2b971b2fe78",
                 "ab6e47d42cec13bdf53a67b21257bddf", id="tc2"),
    pytest.param(K3, "cafebabefacedbaddecaf888", "", P3,
                 "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                 "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                 "4d5c2af327cd64a62cf35abd2ba6fab4", id="tc3"),
    pytest.param(K3, "cafebabefacedbaddecaf888", A4, P3[:120],
                 "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                 "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                 "5bc94fbc3221a5db94fae95ae7121a47", id="tc4"),
    pytest.param(K3, "cafebabefacedbad", A4, P3[:120],
                 "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
                 "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598",
                 "3612d2e79e3b0785561be14aaca2fccb", id="tc5-8-byte-iv"),
    pytest.param(K3, IV6, A4, P3[:120],
                 "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
                 "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
                 "619cc5aefffe0bfa462af43c1699d050", id="tc6-60-byte-iv"),
]


@pytest.mark.parametrize(("key", "iv", "aad", "pt", "ct", "tag"), GCM_VECTORS)
def test_gcm_spec_vectors(rt: RuntimeCrypto, key: str, iv: str, aad: str, pt: str, ct: str,
                          tag: str) -> None:
    k, i, a, p = (bytes.fromhex(x) for x in (key, iv, aad, pt))
    # The vectors as transcribed here agree with cryptography and with the reference.
    assert gcm_cryptography(k, i, a, p) == gcm_reference(k, i, a, p) == (
        bytes.fromhex(ct), bytes.fromhex(tag))
    assert rt.gcm_encrypt(k, i, a, p) == (bytes.fromhex(ct), bytes.fromhex(tag))
    assert rt.gcm_decrypt(k, i, a, bytes.fromhex(ct), bytes.fromhex(tag)) == (0, p)


gcm_inputs = st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=1, max_size=64),
                       st.binary(max_size=100), st.binary(max_size=600))


@settings(max_examples=150, deadline=None)
@given(gcm_inputs)
def test_gcm_matches_cryptography(rt: RuntimeCrypto,
                                  inputs: tuple[bytes, bytes, bytes, bytes]) -> None:
    key, iv, aad, pt = inputs
    ct, tag = rt.gcm_encrypt(key, iv, aad, pt)
    assert (ct, tag) == gcm_expected(key, iv, aad, pt)
    assert rt.gcm_decrypt(key, iv, aad, ct, tag) == (0, pt)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=64),
       st.binary(max_size=40), st.binary(max_size=80))
def test_gcm_reference_matches_cryptography(key: bytes, iv: bytes, aad: bytes,
                                            pt: bytes) -> None:
    """The pure-Python reference that stands in for IVs of 1..7 bytes is itself right."""
    assert gcm_reference(key, iv, aad, pt) == gcm_cryptography(key, iv, aad, pt)


@settings(max_examples=60, deadline=None)
@given(gcm_inputs, st.integers(min_value=0), st.sampled_from(["ct", "aad", "tag"]))
def test_gcm_flipped_bit_fails_and_zeroes(rt: RuntimeCrypto,
                                          inputs: tuple[bytes, bytes, bytes, bytes],
                                          position: int, where: str) -> None:
    key, iv, aad, pt = inputs
    ct, tag = rt.gcm_encrypt(key, iv, aad, pt)
    fields = {"ct": ct, "aad": aad, "tag": tag}
    target = fields[where]
    if not target:                      # nothing to flip in an empty ct or aad: use the tag
        where, target = "tag", tag
    bit = position % (8 * len(target))
    flipped = bytearray(target)
    flipped[bit // 8] ^= 1 << (bit % 8)
    fields[where] = bytes(flipped)
    rc, out = rt.gcm_decrypt(key, iv, fields["aad"], fields["ct"], fields["tag"])
    assert rc == -1
    assert out == bytes(len(ct))


def test_gcm_in_place(rt: RuntimeCrypto) -> None:
    key, iv, aad = bytes(range(16)), bytes(range(12)), b"header"
    pt = bytes(range(256)) * 3 + b"tail"
    buf = ctypes.create_string_buffer(pt, len(pt))
    tag = ctypes.create_string_buffer(16)
    lib = rt.lib
    assert lib.vsgx_aes128_gcm_encrypt(key, iv, 12, aad, len(aad), buf, len(pt), buf, tag) == 0
    assert (buf.raw, tag.raw) == gcm_cryptography(key, iv, aad, pt)
    assert lib.vsgx_aes128_gcm_decrypt(key, iv, 12, aad, len(aad), buf, len(pt), buf, tag) == 0
    assert buf.raw == pt
    # A failed in-place decryption zeroes the buffer that held the ciphertext.
    assert lib.vsgx_aes128_gcm_encrypt(key, iv, 12, aad, len(aad), buf, len(pt), buf, tag) == 0
    assert lib.vsgx_aes128_gcm_decrypt(key, iv, 12, b"", 0, buf, len(pt), buf, tag) == -1
    assert buf.raw == bytes(len(pt))


def test_gcm_null_empty_buffers(rt: RuntimeCrypto) -> None:
    key, iv = bytes(16), bytes(12)
    tag = ctypes.create_string_buffer(16)
    lib = rt.lib
    assert lib.vsgx_aes128_gcm_encrypt(key, iv, 12, None, 0, None, 0, None, tag) == 0
    assert tag.raw.hex() == "58e2fccefa7e3061367f1d57a4e7455a"
    assert lib.vsgx_aes128_gcm_decrypt(key, iv, 12, None, 0, None, 0, None, tag) == 0


def test_gcm_rejects_empty_iv(rt: RuntimeCrypto) -> None:
    key = bytes(16)
    out = ctypes.create_string_buffer(b"\xa5" * 4, 4)
    tag = ctypes.create_string_buffer(b"\xa5" * 16, 16)
    lib = rt.lib
    assert lib.vsgx_aes128_gcm_encrypt(key, b"", 0, None, 0, b"data", 4, out, tag) == -1
    assert out.raw == b"\xa5" * 4 and tag.raw == b"\xa5" * 16
    assert lib.vsgx_aes128_gcm_encrypt(key, None, 12, None, 0, b"data", 4, out, tag) == -1
    assert lib.vsgx_aes128_gcm_decrypt(key, b"", 0, None, 0, b"data", 4, out, tag) == -1
    assert out.raw == bytes(4)


def gf_inverse(x: int) -> int:
    """x^(2^128 - 2), the inverse of a non-zero x in GF(2^128)."""
    result, base, e = 1 << 127, x, 2**128 - 2       # 1 << 127 is the field's one
    while e:
        if e & 1:
            result = gf_mult(result, base)
        base = gf_mult(base, base)
        e >>= 1
    return result


def test_gcm_counter_wraps_mod_2_32(rt: RuntimeCrypto) -> None:
    """inc32 wraps the low 32 bits of the counter without carrying into the other 96: a 16-byte
    IV solved so that J0 ends in 0xfffffffe puts the wrap after the first block."""
    key = bytes(range(16))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = int.from_bytes(ecb.update(bytes(16)))
    h_inv = gf_inverse(h)
    j0 = bytes.fromhex("0123456789abcdef01234567fffffffe")
    # J0 = ((IV * H) ^ L) * H with L = [0]_64 || [128]_64, the length block of a 128-bit IV.
    iv = gf_mult(gf_mult(int.from_bytes(j0), h_inv) ^ 128, h_inv).to_bytes(16)
    assert ghash(h, iv + (128).to_bytes(16)).to_bytes(16) == j0
    pt = bytes(range(100))
    assert rt.gcm_encrypt(key, iv, b"aad", pt) == gcm_cryptography(key, iv, b"aad", pt)


@given(st.binary(max_size=64), st.data())
@settings(max_examples=100, deadline=None)
def test_memequal_ct(rt: RuntimeCrypto, a: bytes, data: st.DataObject) -> None:
    b = data.draw(st.binary(min_size=len(a), max_size=len(a)))
    assert rt.memequal_ct(a, a) == 0
    assert rt.memequal_ct(a, b) == (0 if a == b else 1)


# --- The enclave build -----------------------------------------------------------------------

def test_freestanding_build_has_no_mutable_state(tmp_path: Path) -> None:
    """With the enclave's flags the sources compile warning-free, keep no writable data (no
    .data or .bss: all tables are const) and need nothing from outside but the runtime's
    mem* functions."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the runtime crypto")
    defined: set[str] = set()
    undefined: set[str] = set()
    for src in SOURCES:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([gcc, *ENCLAVE_FLAGS, *WARNINGS, "-I", str(INCLUDE), "-c", str(src),
                        "-o", str(obj)], check=True)
        with obj.open("rb") as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                writable = section["sh_flags"] & 0x1        # SHF_WRITE
                if writable and section["sh_size"]:
                    pytest.fail(f"{src.name}: writable section {section.name}")
            symtab = elf.get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection)
            for sym in symtab.iter_symbols():
                if sym["st_info"]["bind"] != "STB_GLOBAL":
                    continue
                if sym["st_shndx"] == "SHN_UNDEF":
                    undefined.add(sym.name)
                else:
                    defined.add(sym.name)
    assert defined == {"vsgx_aes128_init", "vsgx_aes128_encrypt_block", "vsgx_aes128_cmac",
                       "vsgx_aes128_gcm_encrypt", "vsgx_aes128_gcm_decrypt", "vsgx_memequal_ct"}
    assert undefined - defined <= {"memcpy", "memset", "memcmp", "memmove"}
