/* The service process's protocol server (server.c), driven by hcsemud.c. */
#ifndef HCSEMU_SERVER_H
#define HCSEMU_SERVER_H

#include <stdbool.h>

typedef struct server_config {
    bool private_mode;        /* one client over a socketpair: its end ends the service */
    const char *socket_path;  /* where a shared service listens (for status), or NULL */
    void (*on_stop)(void);    /* asks the main thread to stop the service */
} server_config;

void server_init(const server_config *cfg);
/* Serves one connected client on its own thread; takes fd. */
bool server_serve(int fd);
/* Terminates every compute system (the service is stopping). */
void server_stop_all_systems(void);

#endif
