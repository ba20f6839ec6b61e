/*
 * testload: the MOSIX test program, for mosix's test image.
 *
 * By default it is CPU-bound forever, printing its line number (0, 1, 2, ...) after each
 * unit of work (about 0.1 CPU-second on this machine; --unit changes it). Options:
 *   -m MB            keep MB of memory allocated and touched (resident)
 *   -f FILE          open FILE (appended) on fd 3 and write "x<n>" after each line n; or, with
 *   --write KB       ... write it in chunks of KB kilobytes (default 4) ...
 *   --iosize MB      ... up to MB megabytes (default 10), before computing
 *   --cpu SECONDS    stop after this much CPU time (default: never)
 *   -n COUNT         stop after COUNT lines
 *   -d SECONDS       sleep SECONDS between lines instead of computing (an idle counter)
 *   --unit N         loop iterations per line of CPU work (default 100000000)
 *   --perf           hold a perf_event counter on itself: a feature CRIU cannot checkpoint
 *   --cat            copy standard input to standard output line by line, then exit (stdin tests)
 * Output is flushed after every line, so a checkpoint sees exactly what was written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(const char *why) {
    fprintf(stderr, "testload: %s\nusage: testload [-m MB] [-f FILE [--write KB] [--iosize MB]] "
                    "[--cpu SECONDS] [-n COUNT] [-d SECONDS] [--unit N] [--perf] [--cat]\n", why);
    exit(2);
}

static double number(const char *flag, const char *value) {
    char *end;
    if (!value) usage("an option needs a value");
    double v = strtod(value, &end);
    if (*end || v < 0) { fprintf(stderr, "testload: %s: not a number: %s\n", flag, value); exit(2); }
    return v;
}

/* A task-clock counter on ourselves: CRIU refuses to dump the perf_event fd ("Can't dump file"). */
static int open_perf_counter(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    return (int)syscall(__NR_perf_event_open, &attr, 0, -1, -1, 0);
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double mb = 0, write_kb = 4, iosize_mb = 10, cpu_limit = -1, delay = -1;
    long count = -1, unit = 100000000;
    const char *file = NULL;
    int io_given = 0, perf = 0, cat = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m")) { mb = number(a, v); i++; }
        else if (!strcmp(a, "-f")) { if (!v) usage("-f needs a file"); file = v; i++; }
        else if (!strncmp(a, "-f", 2) && a[2]) { file = a + 2; }
        else if (!strcmp(a, "--write") || !strcmp(a, "-write")) { write_kb = number(a, v); io_given = 1; i++; }
        else if (!strcmp(a, "--iosize") || !strcmp(a, "-iosize")) { iosize_mb = number(a, v); io_given = 1; i++; }
        else if (!strcmp(a, "--cpu") || !strcmp(a, "-cpu")) { cpu_limit = number(a, v); i++; }
        else if (!strcmp(a, "-n")) { count = (long)number(a, v); i++; }
        else if (!strcmp(a, "-d")) { delay = number(a, v); i++; }
        else if (!strcmp(a, "--unit")) { unit = (long)number(a, v); i++; }
        else if (!strcmp(a, "--perf")) { perf = 1; }
        else if (!strcmp(a, "--cat")) { cat = 1; }
        else { fprintf(stderr, "testload: unknown option %s\n", a); usage("bad option"); }
    }
    if (io_given && !file) usage("--write and --iosize need -f FILE");
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (perf && open_perf_counter() < 0) { fprintf(stderr, "testload: perf_event_open: %s\n", strerror(errno)); return 1; }
    if (cat) {
        char line[4096];
        while (fgets(line, sizeof line, stdin)) fputs(line, stdout);
        return 0;
    }

    char *memory = NULL;
    size_t bytes = (size_t)(mb * 1024 * 1024);
    if (bytes) {
        memory = malloc(bytes);
        if (!memory) { perror("testload: malloc"); return 1; }
        for (size_t p = 0; p < bytes; p += 4096) memory[p] = (char)p;
    }
    int fd = -1;
    if (file) {
        fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) { fprintf(stderr, "testload: %s: %s\n", file, strerror(errno)); return 1; }
        if (fd != 3) { if (dup2(fd, 3) < 0) { perror("testload: dup2"); return 1; } close(fd); fd = 3; }
        if (io_given) {
            size_t chunk = (size_t)(write_kb * 1024), total = (size_t)(iosize_mb * 1024 * 1024);
            char *buf = calloc(1, chunk ? chunk : 1);
            for (size_t done = 0; chunk && done < total; done += chunk)
                if (write(fd, buf, chunk) < 0) { perror("testload: write"); return 1; }
            free(buf);
        }
    }
    volatile unsigned long sink = 0;
    for (long line = 0; count < 0 || line < count; line++) {
        if (delay >= 0) {
            struct timespec t = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
            nanosleep(&t, NULL);
        } else {
            for (long k = 0; k < unit; k++) sink += k ^ (sink >> 3);
            if (memory) for (size_t p = 0; p < bytes; p += 4096) memory[p]++;
        }
        printf("%ld\n", line);
        if (fd >= 0 && !io_given) dprintf(fd, "x%ld\n", line);
        if (cpu_limit >= 0 && cpu_seconds() >= cpu_limit) break;
    }
    return 0;
}
