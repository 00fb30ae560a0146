/* The WAGI benchmark guest: a CGI hello world in C (clang + wasi-libc). */
#include <stdio.h>

int main(void) {
    fputs("Content-Type: text/plain\n\nHello, world!\n", stdout);
    return 0;
}
