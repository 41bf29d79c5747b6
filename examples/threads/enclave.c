/* A multi-threaded enclave: four TCSs, so up to four host threads run inside at once, each on
 * its own stack, SSA frames and thread data. Every TCS owns one slot of per-thread results
 * (vsgx_thread_index() picks it), so the threads share no mutable state while they work; a
 * later call reduces the slots.
 *
 *   digest(data, size)   copy an untrusted buffer into the enclave (in 4 KiB pieces, on this
 *                        thread's stack) and FNV-1a-64 it; adds the digest and the byte count
 *                        to this thread's slot; returns the digest
 *   occupy(ms)           stay inside for ms milliseconds (an ocall, "sleep", keeps the TCS
 *                        busy meanwhile); returns this thread's TCS index
 *   total(i)             over all slots: 0 the sum of the digests, 1 the bytes hashed,
 *                        2 the ecalls served; 3 + k: the ecalls TCS k served
 */
#include "vsgx/enclave.h"

#define MAX_THREADS 4
#define CHUNK 4096

struct slot {
    uint64_t digests, bytes, calls;
} __attribute__((aligned(64)));   /* one cache line each */

static struct slot slots[MAX_THREADS];

static struct slot *my_slot(void) { return &slots[vsgx_thread_index() % MAX_THREADS]; }

VSGX_ECALL(digest)(const uint8_t *data, uint64_t size)
{
    uint8_t chunk[CHUNK];
    uint64_t h = 0xcbf29ce484222325ull;
    if (!vsgx_is_outside_enclave(data, size))
        return 0;
    for (uint64_t done = 0; done < size; done += CHUNK) {
        size_t n = size - done < CHUNK ? size - done : CHUNK;
        vsgx_copy_from_untrusted(chunk, data + done, n);
        for (size_t i = 0; i < n; i++) {
            h ^= chunk[i];
            h *= 0x100000001b3ull;
        }
    }
    struct slot *s = my_slot();
    s->digests += h;
    s->bytes += size;
    s->calls++;
    return h;
}

VSGX_ECALL(occupy)(uint64_t ms)
{
    uint64_t args[1] = {ms};
    my_slot()->calls++;
    return vsgx_ocall("sleep", 0, args, 1) ? UINT64_MAX : vsgx_thread_index();
}

VSGX_ECALL(total)(uint64_t which)
{
    uint64_t sum = 0;
    if (which >= 3)
        return which - 3 < MAX_THREADS ? slots[which - 3].calls : UINT64_MAX;
    for (int i = 0; i < MAX_THREADS; i++)
        sum += which == 0 ? slots[i].digests : which == 1 ? slots[i].bytes : slots[i].calls;
    return sum;
}
