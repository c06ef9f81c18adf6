#ifndef SQUEEZE_PROCESS_SUPPORT_H
#define SQUEEZE_PROCESS_SUPPORT_H
#include <sys/types.h>

/// What `squeeze_spawn_supervised` was doing when it failed.
enum squeeze_spawn_step {
    SQUEEZE_SPAWN_STEP_NONE = 0,
    /// Creating the pipes or forking.
    SQUEEZE_SPAWN_STEP_SETUP = 1,
    /// Opening the log file (or /dev/null) for stdout and stderr.
    SQUEEZE_SPAWN_STEP_LOG = 2,
    /// Changing to the working directory.
    SQUEEZE_SPAWN_STEP_CHDIR = 3,
    /// execve of the program.
    SQUEEZE_SPAWN_STEP_EXEC = 4,
};

/// Starts `path` with `argv` and `envp` under a small supervisor process and
/// returns the supervisor's pid in `*pid`; the supervisor leads a new process
/// group holding the program and everything it starts.
///
/// The supervisor waits for the program and then exits the same way (the same
/// exit code, or killed by the same signal), so waiting for it is waiting for
/// the program, and its rusage includes the program's. It ignores SIGINT,
/// SIGTERM and SIGHUP so that signalling the group reaches the program and the
/// supervisor still reports how the program ended.
///
/// When the squeeze process dies, however it dies (kill -9 included), the
/// supervisor sends SIGTERM to the group, waits up to `grace_ms` for the
/// program, then SIGKILLs the group, itself included. It notices through a
/// pipe whose only write end squeeze keeps open: PR_SET_PDEATHSIG would fire
/// when the *thread* that forked exits, and Swift's worker threads come and go.
///
/// stdin is /dev/null; stdout and stderr are appended to `log_path`
/// (/dev/null when NULL); the program runs in `directory` with default
/// signal dispositions and an empty signal mask.
///
/// Returns 0, or an errno value with `*failed_step` saying which step failed.
int squeeze_spawn_supervised(
    const char *path, char *const argv[], char *const envp[], const char *directory,
    const char *log_path, int grace_ms, pid_t *pid, int *failed_step);

#endif
