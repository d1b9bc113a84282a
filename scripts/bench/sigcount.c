/* sigcount.c - an LD_PRELOAD shim for the end-to-end benchmark (scripts/bench/e2e): counts
 * every Ed25519 signature and verification a process makes, and the CPU time spent in them,
 * without touching the programs measured. The CPU time is sampled: one call in SIGCOUNT_EVERY
 * is timed with the thread's CPU clock, because reading that clock is a system call (~3.5 us
 * on this kind of VM) that would otherwise add itself to what it measures, and wall time
 * (the TSC) counts the waits of a preempted call on a loaded machine. The reader scales the
 * sampled time by calls / sampled calls.
 *
 * It interposes libsodium's crypto_sign_detached and crypto_sign_verify_detached (the only
 * two calls cpn signs and verifies with: common/identity.c, common/envelope.c) and keeps
 * the totals in a small file, $CPN_SIGCOUNT_DIR/sig.<pid>, mapped shared, so another
 * process (the load generator) can read them at any moment while the process runs.
 * Without CPN_SIGCOUNT_DIR it only forwards the calls.
 *
 * Build: cc -O2 -shared -fPIC -o sigcount.so sigcount.c -ldl
 * Works because cpn links libsodium as a shared library (calls go through the PLT).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The layout loadgen.c reads (keep the two in step). */
typedef struct {
    uint64_t magic; /* SIGCOUNT_MAGIC once the file is ready */
    uint64_t signs, verifies;
    uint64_t sign_ns, verify_ns;         /* thread CPU time inside the sampled calls */
    uint64_t signs_timed, verifies_timed; /* how many calls were sampled */
} sigcount_t;

#define SIGCOUNT_MAGIC 0x63706e7369673033ull /* "cpnsig03" */

typedef int (*s_sign_fn)(unsigned char *, unsigned long long *, const unsigned char *,
                         unsigned long long, const unsigned char *);
typedef int (*s_verify_fn)(const unsigned char *, const unsigned char *, unsigned long long,
                           const unsigned char *);

static sigcount_t s_local; /* used when no directory is set or the file cannot be made */
static sigcount_t *s_count = &s_local;
static s_sign_fn s_sign;
static s_verify_fn s_verify;

__attribute__((constructor)) static void s_init(void)
{
    s_sign = (s_sign_fn)dlsym(RTLD_NEXT, "crypto_sign_detached");
    s_verify = (s_verify_fn)dlsym(RTLD_NEXT, "crypto_sign_verify_detached");
    const char *dir = getenv("CPN_SIGCOUNT_DIR");
    if (!dir || !dir[0])
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/sig.%ld", dir, (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(sigcount_t)) == 0) {
        void *m = mmap(NULL, sizeof(sigcount_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            s_count = m;
            s_count->magic = SIGCOUNT_MAGIC;
        }
    }
    close(fd);
}

#define SIGCOUNT_EVERY 16

static uint64_t s_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int crypto_sign_detached(unsigned char *sig, unsigned long long *siglen_p,
                         const unsigned char *m, unsigned long long mlen,
                         const unsigned char *sk)
{
    if (!s_sign)
        s_sign = (s_sign_fn)dlsym(RTLD_NEXT, "crypto_sign_detached");
    if (s_count->signs++ % SIGCOUNT_EVERY)
        return s_sign(sig, siglen_p, m, mlen, sk);
    uint64_t t0 = s_cpu_ns();
    int r = s_sign(sig, siglen_p, m, mlen, sk);
    s_count->sign_ns += s_cpu_ns() - t0;
    s_count->signs_timed++;
    return r;
}

int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                unsigned long long mlen, const unsigned char *pk)
{
    if (!s_verify)
        s_verify = (s_verify_fn)dlsym(RTLD_NEXT, "crypto_sign_verify_detached");
    if (s_count->verifies++ % SIGCOUNT_EVERY)
        return s_verify(sig, m, mlen, pk);
    uint64_t t0 = s_cpu_ns();
    int r = s_verify(sig, m, mlen, pk);
    s_count->verify_ns += s_cpu_ns() - t0;
    s_count->verifies_timed++;
    return r;
}
