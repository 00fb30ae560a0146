/* A WAGI test guest in C (wasm32-wasi, Debian's clang + wasi-libc).
 * Behaviour is chosen by PATH_INFO, so one module serves every WAGI test.
 * `/env`, `/file?path=`, `/write-file?path=` and `/list?path=` answer as the
 * Rust guests' do, so one capability suite checks every executor. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static const char *env_or_empty(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

/* The value of `name=` in the query string, or "". */
static const char *query_param(const char *name) {
    static char value[4096];
    const char *query = env_or_empty("QUERY_STRING");
    size_t len = strlen(name);
    for (const char *p = query; *p;) {
        if (strncmp(p, name, len) == 0 && p[len] == '=') {
            const char *start = p + len + 1;
            size_t n = strcspn(start, "&");
            if (n >= sizeof value) n = sizeof value - 1;
            memcpy(value, start, n);
            value[n] = 0;
            return value;
        }
        p += strcspn(p, "&");
        if (*p) p++;
    }
    return "";
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    const char *op = env_or_empty("PATH_INFO");

    if (strcmp(op, "/env") == 0) {
        printf("Content-Type: text/plain\n\n");
        for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
        for (char **e = environ; *e; e++) printf("%s\n", *e);
        return 0;
    }
    if (strcmp(op, "/write-file") == 0) {
        const char *path = query_param("path");
        FILE *f = fopen(path, "w");
        if (!f) {
            printf("Status: 403 Forbidden\nContent-Type: text/plain\n\ncannot write %s\n", path);
            return 0;
        }
        fputs("x", f);
        fclose(f);
        printf("Content-Type: text/plain\n\nwritten\n");
        return 0;
    }
    if (strcmp(op, "/list") == 0) {
        const char *path = query_param("path");
        DIR *dir = opendir(*path ? path : "/");
        if (!dir) {
            printf("Status: 404 Not Found\nContent-Type: text/plain\n\ncannot list %s\n", path);
            return 0;
        }
        char *names[1024];
        int count = 0;
        struct dirent *entry;
        while ((entry = readdir(dir)) && count < 1024) {
            if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, ".."))
                names[count++] = strdup(entry->d_name);
        }
        closedir(dir);
        qsort(names, count, sizeof *names, compare_names);
        printf("Content-Type: text/plain\n\n");
        for (int i = 0; i < count; i++) printf("%s\n", names[i]);
        return 0;
    }
    if (strcmp(op, "/echo") == 0) {
        printf("Content-Type: application/octet-stream\n\n");
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
        return 0;
    }
    if (strcmp(op, "/created") == 0) {
        printf("Status: 201 Created\r\nLocation: /elsewhere\r\nContent-Type: text/plain\r\nX-Custom: yes\r\n\r\nmade it\n");
        return 0;
    }
    if (strcmp(op, "/redirect") == 0) {
        printf("Location: /moved\n\n");
        return 0;
    }
    if (strcmp(op, "/bad") == 0) {
        printf("this is not a CGI response\n");
        return 0;
    }
    if (strcmp(op, "/nothing") == 0) {
        return 0;
    }
    if (strcmp(op, "/exit") == 0) {
        printf("Content-Type: text/plain\n\nexiting with 3\n");
        fflush(stdout);
        exit(3);
    }
    if (strcmp(op, "/big") == 0) {
        printf("Content-Type: application/octet-stream\n\n");
        static char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 100 * 16; i++) {
            if (fwrite(chunk, 1, sizeof chunk, stdout) != sizeof chunk) return 1;
        }
        return 0;
    }
    if (strcmp(op, "/loop") == 0) {
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    if (strcmp(op, "/trap") == 0) {
        __builtin_trap();
    }
    if (strcmp(op, "/file") == 0) {
        FILE *f = fopen(query_param("path"), "r");
        if (!f) {
            printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno such file\n");
            return 0;
        }
        printf("Content-Type: text/plain\n\n");
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    printf("Content-Type: text/plain\n\nhello from C, %s %s\n",
           env_or_empty("REQUEST_METHOD"), env_or_empty("SCRIPT_NAME"));
    return 0;
}
