//! WAGI: CGI/1.1 programs in C and Rust.

use http_body_util::Full;

use crate::support::*;

fn app() -> TestApp {
    TestApp::new(&format!(
        "[[trigger.http]]\nroute = \"/cgi/...\"\ncomponent = \"c\"\nexecutor = {{ type = \"wagi\", argv = \"${{SCRIPT_NAME}} ${{ARGS}} --flag\" }}\n\n\
         [[trigger.http]]\nroute = \"/rust\"\ncomponent = \"rust\"\nexecutor = {{ type = \"wagi\" }}\n\n\
         [component.c]\nsource = {WAGI_C:?}\nenvironment = {{ FROM_MANIFEST = \"yes\" }}\n\n\
         [component.rust]\nsource = {WAGI_RUST:?}\n"
    ))
}

#[tokio::test]
async fn cgi_environment_and_argv() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let reply = send(
        http::Request::post(format!("{}/cgi/env?a&b%20c", ferry.url))
            .header("content-type", "text/x-test")
            .header("x-test-header", "value")
            .body(Full::from("12345"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let port = ferry.addr().rsplit_once(':').unwrap().1.to_owned();
    for line in [
        "argv[0]=/cgi".to_owned(),
        "argv[1]=a".into(),
        "argv[2]=b c".into(),
        "argv[3]=--flag".into(),
        "REQUEST_METHOD=POST".into(),
        "PATH_INFO=/env".into(),
        "X_RAW_PATH_INFO=/env".into(),
        "QUERY_STRING=a&b%20c".into(),
        "SCRIPT_NAME=/cgi".into(),
        "CONTENT_TYPE=text/x-test".into(),
        "CONTENT_LENGTH=5".into(),
        "SERVER_NAME=127.0.0.1".into(),
        format!("SERVER_PORT={port}"),
        "SERVER_PROTOCOL=HTTP/1.1".into(),
        "REMOTE_ADDR=127.0.0.1".into(),
        "GATEWAY_INTERFACE=CGI/1.1".into(),
        "X_MATCHED_ROUTE=/cgi/...".into(),
        format!("X_FULL_URL=http://{}/cgi/env?a&b%20c", ferry.addr()),
        "HTTP_X_TEST_HEADER=value".into(),
        "FROM_MANIFEST=yes".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("HOME="), "host environment leaked:\n{text}");
}

#[tokio::test]
async fn stdin_is_the_body_and_stdout_the_response() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let body = "x".repeat(300_000);
    let reply = send(
        http::Request::post(format!("{}/cgi/echo", ferry.url))
            .body(Full::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), body);

    let created = get(&format!("{}/cgi/created", ferry.url)).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), Some("/elsewhere"));
    assert_eq!(created.header("x-custom"), Some("yes"));
    assert_eq!(created.text(), "made it\n");

    let redirect = get(&format!("{}/cgi/redirect", ferry.url)).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("/moved"));

    // A program may exit non-zero after printing a valid response.
    let exited = get(&format!("{}/cgi/exit", ferry.url)).await;
    assert_eq!(
        (exited.status, exited.text().as_str()),
        (200, "exiting with 3\n")
    );
}

#[tokio::test]
async fn rust_wagi_module() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    let reply = send(
        http::Request::put(format!("{}/rust?one&two", ferry.url))
            .body(Full::from("from stdin"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-guest"), Some("wagi-rust"));
    let text = reply.text();
    assert!(text.contains(r#"args: ["/rust", "one", "two"]"#), "{text}");
    assert!(text.contains("REQUEST_METHOD=PUT"), "{text}");
    assert!(text.ends_with("stdin: from stdin"), "{text}");
}

#[tokio::test]
async fn malformed_cgi_output_is_a_500_with_a_log_line() {
    let app = app();
    let ferry = Ferry::start(&app, &[]);
    for (path, why) in [
        ("/cgi/bad", "no blank line ends the headers"),
        ("/cgi/nothing", "the program printed nothing"),
    ] {
        let mark = ferry.log_mark();
        let reply = get(&format!("{}{path}", ferry.url)).await;
        assert_eq!(reply.status, 500, "{path}");
        assert_eq!(
            reply.text(),
            "Internal Server Error",
            "details must not leak to the client"
        );
        ferry
            .wait_for_log(
                mark,
                &[
                    "malformed CGI output",
                    why,
                    "component=\"c\"",
                    "app=\"test-app\"",
                    "route=\"/cgi/...\"",
                ],
            )
            .await;
    }
    assert_eq!(get(&format!("{}/cgi", ferry.url)).await.status, 200);
}
