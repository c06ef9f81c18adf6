#ifndef SQUEEZE_PROCESS_SUPPORT_H
#define SQUEEZE_PROCESS_SUPPORT_H
#include <spawn.h>

/// posix_spawn_file_actions_addchdir_np, which Swift's Glibc module does not
/// export (it needs _GNU_SOURCE). Returns 0 or an errno value.
int squeeze_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path);

#endif
