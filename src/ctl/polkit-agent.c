/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "polkit-agent.h"

#define PKTTYAGENT "/usr/bin/pkttyagent"
/* Registering takes pkttyagent a round trip to polkitd. */
#define AGENT_REGISTER_TIMEOUT_MS 5000

static pid_t agent_pid;

bool polkit_agent_open(void)
{
        char notify_fd[16], process[32];
        int fds[2], tty;
        pid_t pid;

        if (agent_pid > 0)
                return true;
        if (geteuid() == 0 || !isatty(STDIN_FILENO) || !isatty(STDERR_FILENO) || access(PKTTYAGENT, X_OK) < 0)
                return false;
        /* The agent talks to the controlling terminal, which "su -c" and runuser take away. */
        tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (tty < 0)
                return false;
        close(tty);
        if (pipe2(fds, O_CLOEXEC) < 0)
                return false;

        pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return false;
        }
        if (pid == 0) {
                /* The write end stays open across exec: pkttyagent closes it once registered. */
                if (fcntl(fds[1], F_SETFD, 0) < 0)
                        _exit(EXIT_FAILURE);
                snprintf(notify_fd, sizeof(notify_fd), "%d", fds[1]);
                snprintf(process, sizeof(process), "%d", (int) getppid());
                /* For this process only, so not --fallback: polkitd ignores a fallback agent when
                 * the caller has no login session (su, sudo -u, cron). */
                execl(PKTTYAGENT, PKTTYAGENT, "--notify-fd", notify_fd, "--process", process, (char *) NULL);
                _exit(127);
        }
        close(fds[1]);
        agent_pid = pid;

        /* EOF once it is registered, or has died. */
        for (;;) {
                struct pollfd p = { .fd = fds[0], .events = POLLIN };
                char c;
                int n = poll(&p, 1, AGENT_REGISTER_TIMEOUT_MS);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0 || read(fds[0], &c, 1) <= 0)
                        break;
        }
        close(fds[0]);
        return true;
}

void polkit_agent_close(void)
{
        if (agent_pid <= 0)
                return;
        (void) kill(agent_pid, SIGTERM);
        (void) waitpid(agent_pid, NULL, 0);
        agent_pid = 0;
}
