/* The stacks view's fixture: two call sites whose calls are known exactly. fast_reader makes
 * FAST_READS reads that find their byte already there; slow_reader makes SLOW_READS reads that
 * each wait about SLOW_MS for the byte a writer thread sends. The process stops itself first
 * (SIGSTOP) so that the probes attach before any of it. Built by the test with and without
 * frame pointers. It stops itself again when done, so that peers can read its maps (bpftrace names
 * a stack's addresses only while the process lives). */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAST_READS 100
#define SLOW_READS 10
#define SLOW_MS 20

static int fds[2];

static void *writer(void *arg) {
    (void)arg;
    struct timespec wait = {0, SLOW_MS * 1000000L};
    for (int i = 0; i < SLOW_READS; i++) {
        nanosleep(&wait, NULL);
        if (write(fds[1], "s", 1) != 1)
            abort();
    }
    return NULL;
}

__attribute__((noinline)) void fast_reader(void) {
    char buf[FAST_READS];
    if (write(fds[1], buf, FAST_READS) != FAST_READS)
        abort();
    for (int i = 0; i < FAST_READS; i++)
        if (read(fds[0], buf, 1) != 1)
            abort();
}

__attribute__((noinline)) void slow_reader(void) {
    pthread_t thread;
    char c;
    if (pthread_create(&thread, NULL, writer, NULL) != 0)
        abort();
    for (int i = 0; i < SLOW_READS; i++)
        if (read(fds[0], &c, 1) != 1)
            abort();
    pthread_join(thread, NULL);
}

int main(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return 1;
    raise(SIGSTOP);
    fast_reader();
    slow_reader();
    raise(SIGSTOP);
    return 0;
}
