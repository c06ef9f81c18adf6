#define _GNU_SOURCE
#include "process_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Everything that runs in the forked supervisor and program below uses only
// async-signal-safe calls: squeeze is multithreaded, and after fork only the
// forking thread exists, possibly while another thread held a lock.

/// fork without the pthread_atfork handlers (of libdispatch, Foundation...),
/// as posix_spawn does: neither child runs code that needs them.
static pid_t fork_without_handlers(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return _Fork();
#else
    return fork();
#endif
}

/// The squeeze side of the "squeeze is alive" pipe: squeeze holds the write
/// end for its whole life and never writes; each supervisor polls the read
/// end and sees end-of-file once squeeze is gone.
static int lifeline[2] = {-1, -1};
static int lifeline_error = 0;
static pthread_once_t lifeline_once = PTHREAD_ONCE_INIT;

static void make_lifeline(void) {
    if (pipe2(lifeline, O_CLOEXEC) != 0) lifeline_error = errno;
}

/// The supervisor's self-pipe, written by its SIGCHLD handler.
static int child_exited_pipe[2] = {-1, -1};

static void note_child_exited(int signal_number) {
    (void)signal_number;
    int saved = errno;
    char byte = 0;
    (void)!write(child_exited_pipe[1], &byte, 1);
    errno = saved;
}

/// Closes every descriptor from 3 up except `keep_a` and `keep_b`.
static void close_descriptors_except(int keep_a, int keep_b) {
    int low = keep_a < keep_b ? keep_a : keep_b;
    int high = keep_a < keep_b ? keep_b : keep_a;
    int ranges[3][2] = {{3, low - 1}, {low + 1, high - 1}, {high + 1, -1}};
    for (int i = 0; i < 3; i++) {
        unsigned first = (unsigned)ranges[i][0];
        unsigned last = ranges[i][1] < 0 ? ~0U : (unsigned)ranges[i][1];
        if (ranges[i][1] >= 0 && ranges[i][1] < ranges[i][0]) continue;
#ifdef SYS_close_range
        if (syscall(SYS_close_range, first, last, 0) == 0) continue;
#endif
        struct rlimit limit;
        unsigned end = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
            ? (unsigned)limit.rlim_cur : 65536U;
        for (unsigned fd = first; fd <= last && fd < end; fd++) close((int)fd);
    }
}

static void report_failure(int error_pipe, int step, int code) {
    int message[2] = {step, code};
    (void)!write(error_pipe, message, sizeof message);
}

static void set_disposition(int signal_number, void (*handler)(int)) {
    struct sigaction action = {0};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    sigaction(signal_number, &action, NULL);
}

/// The program's side of the fork: redirect, change directory, exec.
static void become_program(
    const char *path, char *const argv[], char *const envp[], const char *directory,
    const char *log_path, int error_pipe
) {
    int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) set_disposition(signals[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    int input = open("/dev/null", O_RDONLY);
    int output = open(log_path ? log_path : "/dev/null", O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (input < 0 || output < 0) {
        report_failure(error_pipe, SQUEEZE_SPAWN_STEP_LOG, errno);
        _exit(127);
    }
    if (dup2(input, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0) {
        report_failure(error_pipe, SQUEEZE_SPAWN_STEP_LOG, errno);
        _exit(127);
    }
    if (input > 2) close(input);
    if (output > 2) close(output);
    if (chdir(directory) != 0) {
        report_failure(error_pipe, SQUEEZE_SPAWN_STEP_CHDIR, errno);
        _exit(127);
    }
    execve(path, argv, envp);
    report_failure(error_pipe, SQUEEZE_SPAWN_STEP_EXEC, errno);
    _exit(127);
}

/// Ends the supervisor the way the program ended.
static void exit_like(int status) {
    if (WIFSIGNALED(status)) {
        int signal_number = WTERMSIG(status);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        set_disposition(signal_number, SIG_DFL);
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, signal_number);
        sigprocmask(SIG_UNBLOCK, &only, NULL);
        kill(getpid(), signal_number);
        _exit(128 + signal_number);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static void sleep_milliseconds(long milliseconds) {
    struct timespec delay = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {}
}

/// Squeeze is gone: SIGTERM the group, give the program `grace_ms`, then
/// SIGKILL the group (which ends the supervisor too).
static void stop_group(pid_t program, int grace_ms) {
    kill(0, SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 10) {
        int status;
        if (waitpid(program, &status, WNOHANG) == program) break;
        sleep_milliseconds(10);
    }
    kill(0, SIGKILL);
    _exit(137);
}

static void supervise(
    const char *path, char *const argv[], char *const envp[], const char *directory,
    const char *log_path, int grace_ms, int error_pipe
) {
    setpgid(0, 0);
    int lifeline_read = lifeline[0];
    close(lifeline[1]);
    // Descriptors of squeeze (store locks, other stages' pipes) must not stay
    // open here for as long as the program runs.
    close_descriptors_except(lifeline_read, error_pipe);
    // Nor squeeze's stdin, stdout and stderr: a reader of squeeze's output
    // would otherwise wait for the supervisor too.
    int null_device = open("/dev/null", O_RDWR);
    if (null_device >= 0) {
        dup2(null_device, 0);
        dup2(null_device, 1);
        dup2(null_device, 2);
        if (null_device > 2) close(null_device);
    }

    int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (unsigned i = 0; i < sizeof ignored / sizeof ignored[0]; i++) set_disposition(ignored[i], SIG_IGN);
    set_disposition(SIGPIPE, SIG_IGN);
    if (pipe2(child_exited_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        report_failure(error_pipe, SQUEEZE_SPAWN_STEP_SETUP, errno);
        _exit(127);
    }
    struct sigaction on_child = {0};
    on_child.sa_handler = note_child_exited;
    sigemptyset(&on_child.sa_mask);
    on_child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &on_child, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    pid_t program = fork_without_handlers();
    if (program < 0) {
        report_failure(error_pipe, SQUEEZE_SPAWN_STEP_SETUP, errno);
        _exit(127);
    }
    if (program == 0) become_program(path, argv, envp, directory, log_path, error_pipe);
    close(error_pipe);

    struct pollfd watched[2] = {
        {.fd = lifeline_read, .events = POLLIN},
        {.fd = child_exited_pipe[0], .events = POLLIN},
    };
    for (;;) {
        int status;
        if (waitpid(program, &status, WNOHANG) == program) exit_like(status);
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR) continue;
            stop_group(program, grace_ms);
        }
        if (watched[0].revents != 0) stop_group(program, grace_ms);
        if (watched[1].revents != 0) {
            char drained[64];
            while (read(child_exited_pipe[0], drained, sizeof drained) > 0) {}
        }
    }
}

int squeeze_spawn_supervised(
    const char *path, char *const argv[], char *const envp[], const char *directory,
    const char *log_path, int grace_ms, pid_t *pid, int *failed_step
) {
    *failed_step = SQUEEZE_SPAWN_STEP_SETUP;
    pthread_once(&lifeline_once, make_lifeline);
    if (lifeline_error != 0) return lifeline_error;
    int error_pipe[2];
    if (pipe2(error_pipe, O_CLOEXEC) != 0) return errno;

    pid_t supervisor = fork_without_handlers();
    if (supervisor < 0) {
        int code = errno;
        close(error_pipe[0]);
        close(error_pipe[1]);
        return code;
    }
    if (supervisor == 0) {
        close(error_pipe[0]);
        supervise(path, argv, envp, directory, log_path, grace_ms, error_pipe[1]);
        _exit(127);
    }
    close(error_pipe[1]);

    // End-of-file once the program has exec'd (the write end is close-on-exec);
    // a failure report otherwise.
    int message[2] = {0, 0};
    size_t received = 0;
    while (received < sizeof message) {
        ssize_t count = read(error_pipe[0], (char *)message + received, sizeof message - received);
        if (count > 0) {
            received += (size_t)count;
        } else if (count == 0 || errno != EINTR) {
            break;
        }
    }
    close(error_pipe[0]);
    if (received == sizeof message) {
        int status;
        while (waitpid(supervisor, &status, 0) < 0 && errno == EINTR) {}
        *failed_step = message[0];
        return message[1] != 0 ? message[1] : EIO;
    }
    *failed_step = SQUEEZE_SPAWN_STEP_NONE;
    *pid = supervisor;
    return 0;
}
