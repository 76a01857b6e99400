//! AWS clients from the standard environment/config chain, with an endpoint override for
//! S3-compatible stores and local emulators.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

/// How to reach AWS. Everything left `None` comes from the environment and the config
/// files (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, instance roles...).
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Overrides the endpoint of both services (also read from `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Attempts per request, the first included (the SDK's standard retry mode:
    /// exponential backoff with jitter on throttling, 5xx and connection errors).
    pub max_attempts: u32,
}

/// The clients and the runtime that drives them. Blocking code calls [`Aws::block_on`].
pub struct Aws {
    pub runtime: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The endpoint in use when overridden (for messages).
    pub endpoint: Option<String>,
}

impl Aws {
    pub fn connect(options: &AwsOptions) -> anyhow::Result<Arc<Aws>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("spotmill-io")
            .enable_all()
            .build()?;
        let (s3, sqs, endpoint) = runtime.block_on(clients(options));
        Ok(Arc::new(Aws {
            runtime,
            s3,
            sqs,
            endpoint,
        }))
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }
}

async fn clients(
    options: &AwsOptions,
) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client, Option<String>) {
    let attempts = if options.max_attempts == 0 {
        5
    } else {
        options.max_attempts
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        // S3-compatible stores rarely care; AWS itself needs one, and says so.
        config = config
            .into_builder()
            .region(Region::new("us-east-1"))
            .build();
    }
    let endpoint = config.endpoint_url().map(str::to_string);
    let mut s3 = aws_sdk_s3::config::Builder::from(&config);
    if endpoint.is_some() {
        // No environment switch exists for path-style addressing; every S3-compatible
        // store and emulator wants it.
        s3 = s3.force_path_style(true);
    }
    let s3 = aws_sdk_s3::Client::from_conf(s3.build());
    let sqs = aws_sdk_sqs::Client::new(&config);
    (s3, sqs, endpoint)
}

/// The full message of an SDK error (the `Display` of SDK errors says only "service error").
pub fn describe<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
