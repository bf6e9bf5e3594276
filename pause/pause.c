/* The pod infra container's only job is to exist: it holds the pod's namespaces.
 * It reaps orphans (it is PID 1 of the pod's PID namespace when that is shared) and
 * exits cleanly on SIGINT/SIGTERM so that `docker stop` does not wait for SIGKILL. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    signal(SIGINT, on_term);
    signal(SIGTERM, on_term);
    signal(SIGCHLD, on_child);
    for (;;) pause();
}
