/* The floor for start lateness: what a minimal scheduler does at a due instant, and nothing
 * more. Sleeps until the due instant (CLOCK_REALTIME, absolute), then fork+execs the command N
 * times back to back, and reaps the children once all are started.
 *
 * Usage: floor N DUE COMMAND [ARG...]
 *   DUE: the due instant in seconds since the epoch (a whole second, as the daemon's
 *   `every` due times are).
 * Used by scripts/bench-lateness.sh: the daemon's start lateness is compared to this. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s N DUE COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    struct timespec due = {.tv_sec = (time_t)strtoll(argv[2], NULL, 10), .tv_nsec = 0};
    int r;
    while ((r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &due, NULL)) == EINTR) {
    }
    if (r != 0) {
        fprintf(stderr, "clock_nanosleep: error %d\n", r);
        return 1;
    }
    long started = 0;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execvp(argv[3], &argv[3]);
            _exit(127);
        }
        if (pid > 0)
            started++;
    }
    int failed = 0, status;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    if (started != n || failed) {
        fprintf(stderr, "floor: %ld of %ld started, %d failed\n", started, n, failed);
        return 1;
    }
    return 0;
}
