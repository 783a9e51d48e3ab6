//! `make perf`'s lower bound: lambda_http answering `{}`, nothing else.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_request: Request| async {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .map_err(Error::from)
    }))
    .await
}
