/* bench-migrate-dirty MIB RATE: the migration benchmark's workload. Touches MIB MiB of anonymous memory,
 * then keeps rewriting it, one page after another round the whole set, at RATE MiB/s (1 ms
 * steps). Each step reads CLOCK_REALTIME; the longest stop between two steps (a checkpoint's
 * freeze, a migration's downtime, as the workload saw it) is written in microseconds to
 * /gap, and the number of sweeps so far to /sweeps. Its stdio is /dev/null: CRIU cannot dump
 * a process holding the caller's files. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void put(const char *path, long long v) {
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    int n = snprintf(buf, sizeof buf, "%lld\n", v);
    if (write(fd, buf, n) != n) {
        /* nothing to do: the reader sees an older value */
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: dirty MIB RATE_MIB_PER_S\n");
        return 2;
    }
    size_t pages = (size_t)atol(argv[1]) * 256, per_ms = (size_t)atol(argv[2]) * 256 / 1000;
    if (per_ms == 0)
        per_ms = 1;
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    char *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 1;
    memset(mem, 1, pages * 4096);
    put("/gap", 0);
    size_t at = 0;
    long long sweeps = 0, gap = 0, last = now_us();
    struct timespec ms = {0, 1000000};
    for (unsigned char v = 2;; v++) {
        for (size_t i = 0; i < per_ms; i++) {
            mem[at * 4096] = (char)v;
            if (++at == pages) {
                at = 0;
                put("/sweeps", ++sweeps);
            }
        }
        nanosleep(&ms, NULL);
        long long t = now_us();
        if (t - last > gap) {
            gap = t - last;
            put("/gap", gap);
        }
        last = t;
    }
}
