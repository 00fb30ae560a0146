/* A WAGI (CGI) program in C: headers, a blank line, then the body. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    const char *path = getenv("PATH_INFO");
    const char *query = getenv("QUERY_STRING");
    printf("Content-Type: text/plain\n\n");
    printf("Hello from C on Ferry! %s %s%s%s\n", method ? method : "?", path ? path : "",
           query && *query ? "?" : "", query ? query : "");
    return 0;
}
