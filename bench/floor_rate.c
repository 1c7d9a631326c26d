/* The floor for throughput: what a minimal scheduler does to run N short jobs every second,
 * and nothing more. At each whole second for SECS seconds it fork+execs the command N times
 * back to back and reaps the children; a batch is on time when all N started and ended
 * before the next second. Prints "batches B late L start_p99_ms S end_max_ms E failed F".
 *
 * Usage: floor_rate N SECS COMMAND [ARG...]
 * Used by scripts/bench-throughput.sh: the daemon's sustained rate is compared to this. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double since(const struct timespec *due) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (now.tv_sec - due->tv_sec) * 1e3 + (now.tv_nsec - due->tv_nsec) / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s N SECS COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10), secs = strtol(argv[2], NULL, 10);
    double *starts = calloc((size_t)(n * secs), sizeof(double));
    if (!starts)
        return 1;
    struct timespec due;
    clock_gettime(CLOCK_REALTIME, &due);
    due.tv_sec += 1;
    due.tv_nsec = 0;
    long late = 0, failed = 0, k = 0;
    double end_max = 0;
    for (long b = 0; b < secs; b++, due.tv_sec++) {
        int r;
        while ((r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &due, NULL)) == EINTR) {
        }
        for (long i = 0; i < n; i++) {
            starts[k++] = since(&due);
            pid_t pid = fork();
            if (pid == 0) {
                execv(argv[3], &argv[3]);
                _exit(127);
            }
            if (pid < 0)
                failed++;
        }
        int status;
        while (wait(&status) > 0)
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
        double end = since(&due);
        if (end > end_max)
            end_max = end;
        if (end > 1000)
            late++;
    }
    qsort(starts, (size_t)k, sizeof(double), cmp);
    printf("batches %ld late %ld start_p99_ms %.1f end_max_ms %.1f failed %ld\n", secs, late,
           starts[(size_t)(k * 99 / 100)], end_max, failed);
    return 0;
}
