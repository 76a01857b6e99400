//! The fleet, end to end: real `spotmill worker` and `spotmill aggregate` processes against
//! a local S3 + SQS emulator on loopback (scripts/local-aws.sh starts ministack unless
//! AWS_ENDPOINT_URL already names one), killed and interrupted at the worst moments.
//!
//! Every test uses fresh buckets and queues, short leases (2 s, extended every second) and
//! a deadline; the tests run one at a time (their timing assertions need the 2 cores).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use spotmill::fleet::objects::{self, S3Url};
use spotmill::fleet::protocol::Published;
use spotmill::fleet::queue::{self, Queue};
use spotmill::fleet::{Aws, AwsOptions};

/// Longest any test may take before it fails.
const TEST_DEADLINE: Duration = Duration::from_secs(240);
const VISIBILITY: &str = "2";
const EXTEND_MS: &str = "1000";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tmp_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The emulator's endpoint: $AWS_ENDPOINT_URL, or one started for this test binary (and
/// stopped when it exits).
fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let url = match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let state = tmp_root().join("local-aws");
                let out = Command::new("bash")
                    .arg(repo_root().join("scripts/local-aws.sh"))
                    .args(["start", "--watch-pid", &std::process::id().to_string()])
                    .env("SPOTMILL_LOCAL_AWS_DIR", &state)
                    .stdin(Stdio::null())
                    .output()
                    .expect("run scripts/local-aws.sh");
                assert!(
                    out.status.success(),
                    "scripts/local-aws.sh start failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("export AWS_ENDPOINT_URL="))
                    .expect("the script printed AWS_ENDPOINT_URL")
                    .to_string()
            }
        };
        let host = url
            .trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap_or_default();
        assert!(
            host == "127.0.0.1" || host == "localhost" || host == "[::1]",
            "the fleet tests only talk to loopback, not {url}"
        );
        url
    })
}

fn aws() -> &'static Arc<Aws> {
    static AWS: OnceLock<Arc<Aws>> = OnceLock::new();
    AWS.get_or_init(|| {
        set_aws_env();
        Aws::connect(&AwsOptions {
            endpoint_url: Some(endpoint().to_string()),
            region: Some("us-east-1".into()),
            max_attempts: 3,
        })
        .unwrap()
    })
}

fn set_aws_env() {
    for (k, v) in aws_env() {
        // SAFETY-free in 2021 edition: set before any client reads the environment.
        std::env::set_var(k, v);
    }
}

fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint().to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn analyses_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SPOTMILL_ANALYSES_DIR") {
            return PathBuf::from(dir);
        }
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join("spotmill-analyses");
        let lock = std::fs::File::create(tmp.join("spotmill-analyses.lock")).unwrap();
        lock.lock().unwrap();
        let wasm_target = std::env::var_os("SPOTMILL_WASM_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| tmp.join("spotmill-wasm-target"));
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-analyses.sh"))
            .arg(&out)
            .env("SPOTMILL_WASM_TARGET_DIR", wasm_target)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/build-analyses.sh failed");
        out
    })
}

fn wasm(name: &str) -> PathBuf {
    let path = analyses_dir().join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn spotmill() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spotmill"));
    command
        .envs(aws_env())
        .env("SPOTMILL_CACHE_DIR", tmp_root().join("cache"))
        .env_remove("SPOTMILL_FAULT")
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end within `limit`, or kills it and fails.
fn run(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spotmill");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_reader =
        std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {limit:?}; stderr:\n{}",
                err_reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap().into_bytes(),
        stderr: err_reader.join().unwrap().into_bytes(),
    }
}

/// The generated tree and what `spotmill run` publishes over it.
struct Dataset {
    input: PathBuf,
    expected: BTreeMap<String, Vec<u8>>,
    run_seconds: f64,
    bytes: u64,
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn dataset() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        let root = tmp_root();
        let input = root.join("tree");
        if !input.exists() {
            let out = run(
                {
                    let mut c = spotmill();
                    c.args([
                        "gen",
                        "--submissions",
                        "400",
                        "--seed",
                        "17",
                        "--max-file-mb",
                        "1",
                        "--out",
                    ])
                    .arg(&input);
                    c
                },
                Duration::from_secs(180),
            );
            assert!(
                out.status.success(),
                "gen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let output = root.join("expected");
        let _ = std::fs::remove_dir_all(&output);
        let started = Instant::now();
        let out = run(
            {
                let mut c = spotmill();
                c.arg("run")
                    .arg("--analysis")
                    .arg(wasm("os-distribution.wasm"))
                    .arg("--input")
                    .arg(&input)
                    .arg("--output")
                    .arg(&output)
                    .args(["--quiet", "--json"]);
                c
            },
            Duration::from_secs(180),
        );
        let run_seconds = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = read_tree(&input);
        assert!(
            files.len() >= 200,
            "the generated tree has only {} files",
            files.len()
        );
        Dataset {
            bytes: files.values().map(|f| f.len() as u64).sum(),
            input,
            // `run` keeps its own resume state under `.spotmill/`: not a published file.
            expected: read_tree(&output)
                .into_iter()
                .filter(|(k, _)| !k.starts_with(".spotmill/"))
                .collect(),
            run_seconds,
        }
    })
}

/// Events a worker printed, with when the test saw them.
type Events = Arc<Mutex<Vec<(Instant, Value)>>>;

struct Worker {
    child: Child,
    events: Events,
}

impl Worker {
    fn find(&self, event: &str, task: Option<&str>) -> Option<(Instant, Value)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, v)| {
                v["event"] == event && task.is_none_or(|t| v["task"].as_str() == Some(t))
            })
            .cloned()
    }
}

/// Fresh buckets and queues for one test, the workers it started, and its deadline.
struct Fleet {
    data: S3Url,
    jobs: S3Url,
    tasks: Queue,
    _dead_letters: Queue,
    done: Queue,
    workers: Vec<Worker>,
    deadline: Instant,
    _serial: MutexGuard<'static, ()>,
}

static NONCE: AtomicUsize = AtomicUsize::new(0);

impl Fleet {
    fn new(test: &str, visibility: u32) -> Fleet {
        let serial = serial();
        let deadline = Instant::now() + TEST_DEADLINE;
        let _ = dataset();
        let aws = aws();
        let n = NONCE.fetch_add(1, Ordering::Relaxed);
        let name = format!("{test}-{}-{n}", std::process::id()).replace('_', "-");
        let data = S3Url::parse(&format!("s3://data-{name}/published")).unwrap();
        let jobs = S3Url::parse(&format!("s3://jobs-{name}/analysis")).unwrap();
        let (tasks, dead_letters, done) = aws.block_on(async {
            objects::ensure_bucket(&aws.s3, &data.bucket).await.unwrap();
            objects::ensure_bucket(&aws.s3, &jobs.bucket).await.unwrap();
            let (tasks, dlq) =
                queue::create_with_dead_letter(&aws.sqs, &format!("tasks-{name}"), visibility, 3)
                    .await
                    .unwrap();
            let done = queue::create(&aws.sqs, &format!("done-{name}"), 30, None)
                .await
                .unwrap();
            (tasks, dlq, done)
        });
        let fleet = Fleet {
            data,
            jobs,
            tasks,
            _dead_letters: dead_letters,
            done,
            workers: Vec::new(),
            deadline,
            _serial: serial,
        };
        fleet.upload(&dataset().input);
        fleet
    }

    fn upload(&self, tree: &Path) {
        let aws = aws();
        let files = read_tree(tree);
        aws.block_on(async {
            let mut running = tokio::task::JoinSet::new();
            for (key, bytes) in files {
                let s3 = aws.s3.clone();
                let bucket = self.data.bucket.clone();
                let key = self.data.key(&key);
                running.spawn(async move { objects::put(&s3, &bucket, &key, bytes, None).await });
                if running.len() >= 16 {
                    running.join_next().await.unwrap().unwrap().unwrap();
                }
            }
            while let Some(r) = running.join_next().await {
                r.unwrap().unwrap();
            }
        });
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn submit(&self, analysis: &str, extra: &[&str]) -> String {
        let mut c = spotmill();
        c.arg("submit")
            .arg("--analysis")
            .arg(wasm(analysis))
            .args(["--input", &self.data.to_string()])
            .args(["--job-bucket", &self.jobs.to_string()])
            .args(["--task-queue", &self.tasks.url])
            .args(["--done-queue", &self.done.url])
            .args(extra);
        if !extra.contains(&"--target-tasks") {
            c.args(["--target-tasks", "40", "--max-task-files", "8"]);
        }
        let out = run(c, self.left());
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn spawn_worker(&mut self, id: &str, fault: Option<&str>, extra: &[&str]) -> usize {
        let mut c = spotmill();
        c.arg("worker")
            .args([
                "--task-queue",
                &self.tasks.url,
                "--done-queue",
                &self.done.url,
            ])
            .args(["--jobs", "1", "--wait-seconds", "1"])
            .args(["--lease-extend-ms", EXTEND_MS])
            .args(["--failure-backoff", "0", "--worker-id", id])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !extra.contains(&"--visibility-timeout") {
            c.args(["--visibility-timeout", VISIBILITY]);
        }
        if !extra.contains(&"--interruption-url") {
            c.args(["--interruption-url", "off"]);
        }
        if let Some(f) = fault {
            c.env("SPOTMILL_FAULT", f);
        }
        let mut child = c.spawn().expect("start a worker");
        let stdout = child.stdout.take().unwrap();
        let events: Events = Arc::default();
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push((Instant::now(), v));
                }
            }
        });
        self.workers.push(Worker { child, events });
        self.workers.len() - 1
    }

    /// Waits until `check` holds, or fails the test at its deadline.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < self.deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn aggregate(&self, job: &str, fault: Option<&str>, extra: &[&str]) -> Output {
        let mut c = spotmill();
        c.arg("aggregate")
            .args(["--job-bucket", &self.jobs.to_string(), "--job", job])
            .args(["--wait-seconds", "1", "--json"])
            .args(["--timeout-secs", &self.left().as_secs().to_string()])
            .args(extra);
        if !extra.contains(&"--lease-seconds") {
            c.args(["--lease-seconds", "2"]);
        }
        if let Some(f) = fault {
            c.env("SPOTMILL_FAULT", f);
        }
        run(c, self.left() + Duration::from_secs(5))
    }

    fn status(&self, job: &str) -> Value {
        let mut c = spotmill();
        c.args([
            "status",
            job,
            "--job-bucket",
            &self.jobs.to_string(),
            "--json",
        ]);
        let out = run(c, Duration::from_secs(60));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The files the job's pointer names, read back from the bucket.
    fn published(&self, job: &str) -> BTreeMap<String, Vec<u8>> {
        let aws = aws();
        let web = self.jobs.join(&format!("jobs/{job}/published"));
        let pointer: Published = serde_json::from_slice(
            &aws.block_on(objects::get(&aws.s3, &web.bucket, &web.key("current.json")))
                .unwrap(),
        )
        .unwrap();
        let location = S3Url::parse(&pointer.location).unwrap();
        pointer
            .files
            .iter()
            .map(|f| {
                let bytes = aws
                    .block_on(objects::get(&aws.s3, &location.bucket, &location.key(f)))
                    .unwrap();
                (f.clone(), bytes)
            })
            .collect()
    }

    fn assert_matches_local_run(&self, job: &str) {
        let published = self.published(job);
        let expected = &dataset().expected;
        assert_eq!(
            published.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "published file names differ from `spotmill run`"
        );
        for (name, bytes) in expected {
            assert!(
                &published[name] == bytes,
                "{name} differs from what `spotmill run` published"
            );
        }
    }

    fn stop_workers(&mut self) {
        for w in &mut self.workers {
            let _ = Command::new("kill")
                .args(["-TERM", &w.child.id().to_string()])
                .status();
        }
        for w in &mut self.workers {
            let until = Instant::now() + Duration::from_secs(10);
            while w.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}); status {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn three_workers_publish_exactly_what_a_local_run_publishes() {
    let mut fleet = Fleet::new("three", 2);
    let started = Instant::now();
    let job = fleet.submit("os-distribution.wasm", &[]);
    for i in 0..3 {
        fleet.spawn_worker(&format!("w{i}"), None, &[]);
    }
    let out = fleet.aggregate(&job, None, &[]);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = json(&out);
    assert_eq!(outcome["merged"], outcome["tasks"]);
    fleet.assert_matches_local_run(&job);
    let status = fleet.status(&job);
    assert_eq!(status["state"], "published");
    assert_eq!(status["done"], status["tasks"]);
    assert_eq!(status["failed"].as_array().unwrap().len(), 0);
    let data = dataset();
    eprintln!(
        "fleet: {} tasks, {:.1} MB in {elapsed:.1} s with 3 workers ({:.1} MB/s); `spotmill run`: {:.1} s ({:.1} MB/s)",
        outcome["tasks"],
        data.bytes as f64 / 1e6,
        data.bytes as f64 / 1e6 / elapsed,
        data.run_seconds,
        data.bytes as f64 / 1e6 / data.run_seconds
    );
    // Every task was done by a worker, and they shared the work.
    let busy = fleet
        .workers
        .iter()
        .filter(|w| w.find("done", None).is_some())
        .count();
    assert!(busy >= 2, "only {busy} workers did any task");
    fleet.stop_workers();
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let mut fleet = Fleet::new("kill9", 2);
    let job = fleet.submit("os-distribution.wasm", &[]);
    // The first worker is slow (each task waits 3 s before it starts) so it is surely
    // killed in the middle of one.
    let victim = fleet.spawn_worker("victim", Some("task-delay-ms=3000"), &[]);
    let (_, started) = fleet.wait_for("the victim to start a task", || {
        fleet.workers[victim].find("start", None)
    });
    let task = started["task"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    signal(&fleet.workers[victim].child, "-KILL");
    fleet.spawn_worker("w1", None, &[]);
    fleet.spawn_worker("w2", None, &[]);
    let out = fleet.aggregate(&job, None, &[]);
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet.assert_matches_local_run(&job);
    let redone = fleet.workers[1..]
        .iter()
        .filter_map(|w| w.find("start", Some(&task)))
        .next()
        .expect("another worker redid the killed worker's task");
    assert!(
        redone.1["receive_count"].as_u64().unwrap() >= 2,
        "the task came back from the queue: {}",
        redone.1
    );
    assert!(fleet.workers[victim].find("done", Some(&task)).is_none());
    fleet.stop_workers();
}

/// A worker told to stop (by `trigger`) releases its task at once: another worker starts
/// it long before the visibility timeout (10 s here) would have let it.
fn a_stopped_worker_releases_its_task(
    test: &str,
    trigger: impl FnOnce(&Fleet, usize),
    extra: &[&str],
) {
    let mut fleet = Fleet::new(test, 10);
    // One task, so the only task the second worker can get is the released one.
    let job = fleet.submit(
        "os-distribution.wasm",
        &["--target-tasks", "1", "--max-task-files", "100000"],
    );
    let mut args = vec!["--visibility-timeout", "10"];
    args.extend_from_slice(extra);
    let victim = fleet.spawn_worker("victim", Some("task-delay-ms=60000"), &args);
    let (_, started) = fleet.wait_for("the victim to start the task", || {
        fleet.workers[victim].find("start", None)
    });
    let task = started["task"].as_str().unwrap().to_string();
    let other = fleet.spawn_worker("other", None, &["--visibility-timeout", "10"]);
    fleet.wait_for("the other worker to be ready", || {
        fleet.workers[other].find("ready", None)
    });
    // Past the victim's first lease extension, so a release that did not happen would
    // leave the task invisible for 10 s.
    std::thread::sleep(Duration::from_millis(1500));
    let stopped_at = Instant::now();
    trigger(&fleet, victim);
    let (released_at, _) = fleet.wait_for("the victim to release its task", || {
        fleet.workers[victim].find("released", Some(&task))
    });
    let (picked_at, picked) = fleet.wait_for("the other worker to start the task", || {
        fleet.workers[other].find("start", Some(&task))
    });
    let exited = loop {
        if let Some(status) = fleet.workers[victim].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < fleet.deadline,
            "timed out waiting for the victim to exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited.success(), "the victim exited with {exited}");
    let release = released_at - stopped_at;
    let pickup = picked_at - stopped_at;
    eprintln!("{test}: released after {release:?}, picked up after {pickup:?}");
    assert!(
        release < Duration::from_secs(3),
        "released only after {release:?}"
    );
    assert!(
        pickup < Duration::from_secs(4),
        "picked up after {pickup:?}: not released (the visibility timeout is 10 s)"
    );
    assert_eq!(picked["receive_count"], 2);
    let out = fleet.aggregate(&job, None, &[]);
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet.assert_matches_local_run(&job);
    fleet.stop_workers();
}

#[test]
fn sigterm_releases_the_task_at_once_and_another_worker_finishes_it() {
    a_stopped_worker_releases_its_task(
        "sigterm",
        |fleet, victim| signal(&fleet.workers[victim].child, "-TERM"),
        &[],
    );
}

/// A fake metadata service: 404 until armed, then 200 (as EC2 does ~2 minutes before it
/// takes a spot instance back).
struct FakeMetadata {
    url: String,
    armed: Arc<AtomicBool>,
}

impl FakeMetadata {
    fn start() -> FakeMetadata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/latest/meta-data/spot/instance-action",
            listener.local_addr().unwrap()
        );
        let armed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&armed);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 2048];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let reply = if flag.load(Ordering::SeqCst) {
                    "HTTP/1.1 200 OK\r\nContent-Length: 47\r\n\r\n{\"action\":\"terminate\",\"time\":\"2026-11-01T00:02Z\"}"
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        FakeMetadata { url, armed }
    }
}

#[test]
fn a_spot_interruption_notice_releases_the_task_at_once() {
    let metadata = FakeMetadata::start();
    let url = metadata.url.clone();
    let armed = Arc::clone(&metadata.armed);
    a_stopped_worker_releases_its_task(
        "spot",
        move |_, _| armed.store(true, Ordering::SeqCst),
        &["--interruption-url", &url, "--interruption-poll-ms", "200"],
    );
}

#[test]
fn a_duplicated_done_message_is_counted_once() {
    let mut fleet = Fleet::new("dup", 2);
    let job = fleet.submit("os-distribution.wasm", &[]);
    fleet.spawn_worker("w0", None, &[]);
    fleet.spawn_worker("w1", None, &[]);
    let tasks = fleet.status(&job)["tasks"].as_u64().unwrap();
    fleet.wait_for("every task to be done", || {
        (fleet.status(&job)["done"].as_u64() == Some(tasks)).then_some(())
    });
    // Copy some done messages (peeked with no lease, so each is there twice at once).
    let aws = aws();
    let copied = aws.block_on(async {
        let got = fleet.done.receive(10, 1, Some(0)).await.unwrap();
        let bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
        fleet.done.send_all(&bodies).await.unwrap();
        bodies.len()
    });
    assert!(copied > 0);
    let out = fleet.aggregate(&job, None, &[]);
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = json(&out);
    assert_eq!(outcome["merged"].as_u64(), Some(tasks));
    assert!(
        outcome["duplicates_ignored"].as_u64().unwrap() >= copied as u64,
        "{outcome}"
    );
    fleet.assert_matches_local_run(&job);
    fleet.stop_workers();
}

#[test]
fn an_aggregator_killed_between_state_write_and_delete_publishes_the_same() {
    let mut fleet = Fleet::new("aggkill", 2);
    let job = fleet.submit("os-distribution.wasm", &[]);
    fleet.spawn_worker("w0", None, &[]);
    fleet.spawn_worker("w1", None, &[]);
    let tasks = fleet.status(&job)["tasks"].as_u64().unwrap();
    fleet.wait_for("every task to be done", || {
        (fleet.status(&job)["done"].as_u64() == Some(tasks)).then_some(())
    });
    // Small rounds, so the crash leaves most of the job to the second aggregator.
    let out = fleet.aggregate(&job, Some("exit-after-state-write"), &["--round-size", "5"]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aws = aws();
    let state: Value = serde_json::from_slice(
        &aws.block_on(objects::get(
            &aws.s3,
            &fleet.jobs.bucket,
            &fleet.jobs.key(&format!("jobs/{job}/state.json")),
        ))
        .unwrap(),
    )
    .unwrap();
    let merged_before = state["merged"].as_object().unwrap().len();
    assert!(merged_before > 0);
    // Past the crashed round's lease (2 s): its messages are back on the queue.
    std::thread::sleep(Duration::from_millis(2500));
    let out = fleet.aggregate(&job, None, &[]);
    assert!(
        out.status.success(),
        "aggregate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = json(&out);
    assert_eq!(outcome["merged"], outcome["tasks"]);
    // The crashed round's messages came back and were recognised as merged.
    assert!(
        outcome["duplicates_ignored"].as_u64().unwrap() >= merged_before as u64,
        "{outcome}"
    );
    fleet.assert_matches_local_run(&job);
    // A third run finds everything merged and publishes the same files again.
    let again = json(&fleet.aggregate(&job, None, &[]));
    assert_eq!(
        again["published"]["revision"],
        outcome["published"]["revision"]
    );
    fleet.assert_matches_local_run(&job);
    fleet.stop_workers();
}

/// Writes an `.xz` log holding `records` (id, json) at `key` under `root`.
fn write_xz(root: &Path, key: &str, records: &[(String, String)]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut encoder = xz2::write::XzEncoder::new(std::fs::File::create(&path).unwrap(), 6);
    for (id, json) in records {
        writeln!(encoder, "{id}\t{json}").unwrap();
    }
    encoder.finish().unwrap();
}

#[test]
fn a_poison_task_lands_in_the_dead_letter_queue_and_the_rest_completes() {
    let mut fleet = Fleet::new("poison", 2);
    // One more file, next to a generated one, whose records trap the hostile analysis.
    let extra = tmp_root().join(format!("poison-{}", NONCE.load(Ordering::Relaxed)));
    let some_key = dataset().expected.len(); // (only to touch the dataset)
    let _ = some_key;
    let first = read_tree(&dataset().input).into_keys().next().unwrap();
    let dir = Path::new(&first)
        .parent()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let name = Path::new(&first)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut parts: Vec<&str> = name.split('.').collect();
    parts[4] = "00000000-0000-0000-0000-00000000beef";
    parts[5] = "xz";
    let poison_key = format!("{dir}/{}", parts.join("."));
    write_xz(
        &extra,
        &poison_key,
        &[(
            "poison-0001".into(),
            r#"{"environment":{"system":{"os":{"name":"PoisonOS"}}}}"#.into(),
        )],
    );
    fleet.upload(&extra);
    let job = fleet.submit(
        "hostile-panic.wasm",
        &[
            "--params-json",
            r#"{"trigger":"poison"}"#,
            "--max-bad-records",
            "0",
        ],
    );
    fleet.spawn_worker("w0", None, &[]);
    fleet.spawn_worker("w1", None, &[]);
    let out = fleet.aggregate(&job, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = json(&out);
    let failed = outcome["failed"].as_object().unwrap();
    assert_eq!(failed.len(), 1, "{outcome}");
    let (task, reason) = failed.iter().next().unwrap();
    assert!(reason.as_str().unwrap().contains("quarantined"), "{reason}");
    assert_eq!(
        outcome["merged"].as_u64().unwrap() + 1,
        outcome["tasks"].as_u64().unwrap()
    );
    assert!(
        outcome["published"].is_null(),
        "an incomplete job must not publish by default"
    );
    let status = fleet.status(&job);
    assert_eq!(status["state"], "failed");
    let listed = &status["failed"][0];
    assert_eq!(listed["task"].as_str(), Some(task.as_str()));
    assert!(
        listed["reason"]
            .as_str()
            .unwrap()
            .contains("over the limit of 0"),
        "{listed}"
    );
    assert!(
        listed["quarantine_notes"][0]
            .as_str()
            .unwrap()
            .contains("poison-0001"),
        "{listed}"
    );
    // --allow-failed publishes the rest and says it is incomplete.
    let out = fleet.aggregate(&job, None, &["--allow-failed"]);
    let outcome = json(&out);
    assert_eq!(outcome["published"]["complete"], false);
    assert_eq!(
        outcome["published"]["tasks_failed"][0].as_str(),
        Some(task.as_str())
    );
    fleet.stop_workers();
}

#[test]
fn a_missing_input_object_fails_its_task_loudly() {
    let mut fleet = Fleet::new("missing", 2);
    let job = fleet.submit("os-distribution.wasm", &[]);
    let aws = aws();
    let victim = read_tree(&dataset().input).into_keys().nth(7).unwrap();
    aws.block_on(objects::delete(
        &aws.s3,
        &fleet.data.bucket,
        &fleet.data.key(&victim),
    ))
    .unwrap();
    fleet.spawn_worker("w0", None, &[]);
    fleet.spawn_worker("w1", None, &[]);
    let out = fleet.aggregate(&job, None, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = json(&out);
    let failed = outcome["failed"].as_object().unwrap();
    assert_eq!(failed.len(), 1, "{outcome}");
    let reason = failed.values().next().unwrap().as_str().unwrap();
    assert!(
        reason.contains(&victim) && reason.contains("does not exist"),
        "{reason}"
    );
    let status = fleet.status(&job);
    assert!(status["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains(&victim));
    // Every delivery failed the same way before SQS moved it to the dead-letter queue.
    assert!(
        status["failed"][0]["receive_count"].as_u64().unwrap() >= 3,
        "{status}"
    );
    fleet.stop_workers();
}

#[test]
fn s3_listing_prunes_by_filter_like_the_local_listing() {
    let fleet = Fleet::new("list", 2);
    let filter_path = tmp_root().join("filter-release.json");
    // One channel, and a build id range: exercises `/` and `.` level pruning.
    let local_all =
        spotmill::store::list_inputs(&dataset().input, &spotmill::logs::Filter::all()).unwrap();
    let channel = local_all.files[0].dimensions.channel.clone();
    let mut builds: Vec<String> = local_all
        .files
        .iter()
        .map(|f| f.dimensions.build_id.clone())
        .collect();
    builds.sort();
    let mid = builds[builds.len() / 2].clone();
    std::fs::write(
        &filter_path,
        serde_json::json!({"version": 1, "dimensions": [
            {"field_name": "reason", "allowed_values": "*"},
            {"field_name": "appName", "allowed_values": "*"},
            {"field_name": "appUpdateChannel", "allowed_values": [channel]},
            {"field_name": "appVersion", "allowed_values": "*"},
            {"field_name": "appBuildID", "allowed_values": {"min": mid}},
        ]})
        .to_string(),
    )
    .unwrap();
    let filter = spotmill::logs::Filter::from_file(&filter_path).unwrap();
    let local = spotmill::store::list_inputs(&dataset().input, &filter).unwrap();
    let aws = aws();
    let remote = aws
        .block_on(objects::list_inputs(&aws.s3, &fleet.data, &filter))
        .unwrap();
    let keys = |files: &[spotmill::store::InputFile]| {
        files
            .iter()
            .map(|f| (f.key.clone(), f.size))
            .collect::<Vec<_>>()
    };
    assert!(!local.files.is_empty() && local.files.len() < local_all.files.len());
    assert_eq!(keys(&remote.files), keys(&local.files));
    assert!(remote.ignored.is_empty(), "{:?}", remote.ignored);
}

#[test]
fn large_objects_go_up_in_parts_and_stream_back_whole() {
    let fleet = Fleet::new("multipart", 2);
    let aws = aws();
    let data: Vec<u8> = (0..(12u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let key = fleet.jobs.key("big/object");
    aws.block_on(objects::put_with_threshold(
        &aws.s3,
        &fleet.jobs.bucket,
        &key,
        data.clone(),
        None,
        5 << 20,
    ))
    .unwrap();
    // Read back through the streaming input source, from a plain thread.
    let source = spotmill::fleet::S3Input::new(aws.handle(), aws.s3.clone(), fleet.jobs.clone());
    let file = spotmill::store::InputFile {
        key: "big/object".into(),
        path: "s3://x".into(),
        size: data.len() as u64,
        dimensions: spotmill::logs::parse_key(
            "r/a/c/v/b.20260101.v2.log.00000000-0000-0000-0000-000000000000.xz",
        )
        .unwrap(),
    };
    let mut reader = spotmill::store::InputSource::open(&source, &file).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut back).unwrap();
    assert!(
        back == data,
        "the object read back differs ({} bytes)",
        back.len()
    );
    // A missing object is an error that names it, never an empty stream.
    let mut missing = file.clone();
    missing.key = "big/nothing".into();
    let error = match spotmill::store::InputSource::open(&source, &missing) {
        Ok(_) => panic!("a missing object opened"),
        Err(e) => e,
    };
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("big/nothing"));
    assert_eq!(source.errors().len(), 1);
}

/// Measures the aggregator on 10,000 partials (real partials of a job, repeated): run with
/// `cargo test --release --test fleet -- --ignored --nocapture measure`.
fn measure_merge_of_10000_partials(analysis: &str) {
    let mut fleet = Fleet::new("measure", 30);
    let job = fleet.submit(analysis, &[]);
    fleet.spawn_worker("w0", None, &[]);
    fleet.spawn_worker("w1", None, &[]);
    let tasks = fleet.status(&job)["tasks"].as_u64().unwrap();
    fleet.wait_for("every task to be done", || {
        (fleet.status(&job)["done"].as_u64() == Some(tasks)).then_some(())
    });
    fleet.stop_workers();
    let aws = aws();
    let root = fleet.jobs.clone();
    let prefix = root.key(&format!("jobs/{job}/partials/"));
    let partials: Vec<Vec<u8>> = aws.block_on(async {
        let listed = objects::list_all(&aws.s3, &root.bucket, &prefix)
            .await
            .unwrap();
        let mut out = Vec::new();
        for o in listed.iter().filter(|o| !o.key.ends_with(".json")) {
            out.push(objects::get(&aws.s3, &root.bucket, &o.key).await.unwrap());
        }
        out
    });
    const N: usize = 10_000;
    let record_key = root.key(&format!("jobs/{job}/job.json"));
    let setup = Instant::now();
    aws.block_on(async {
        // Drain the real done messages: the synthetic ones replace them.
        while !fleet
            .done
            .receive(10, 0, Some(600))
            .await
            .unwrap()
            .is_empty()
        {}
        let mut record: Value = serde_json::from_slice(
            &objects::get(&aws.s3, &root.bucket, &record_key)
                .await
                .unwrap(),
        )
        .unwrap();
        record["tasks"] = (0..N)
            .map(|i| serde_json::json!({"id": format!("s{i:06}"), "bytes": 1, "files": []}))
            .collect();
        objects::put(
            &aws.s3,
            &root.bucket,
            &record_key,
            serde_json::to_vec(&record).unwrap(),
            None,
        )
        .await
        .unwrap();
        let mut bodies = Vec::new();
        let mut running = tokio::task::JoinSet::new();
        for i in 0..N {
            let partial = partials[i % partials.len()].clone();
            let key = root.key(&format!("jobs/{job}/partials/s{i:06}"));
            bodies.push(
                serde_json::json!({"version": 1, "job": job, "task": format!("s{i:06}"),
                    "partial_key": key, "partial_bytes": partial.len(), "partial_sha256": "",
                    "worker": "synthetic", "elapsed_ms": 0, "stats": {}})
                .to_string(),
            );
            let s3 = aws.s3.clone();
            let bucket = root.bucket.clone();
            running.spawn(async move { objects::put(&s3, &bucket, &key, partial, None).await });
            if running.len() >= 32 {
                running.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = running.join_next().await {
            r.unwrap().unwrap();
        }
        fleet.done.send_all(&bodies).await.unwrap();
    });
    eprintln!(
        "setup of {N} partials: {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let out = fleet.aggregate(&job, None, &["--lease-seconds", "600"]);
    let outcome = json(&out);
    assert_eq!(outcome["merged"].as_u64(), Some(N as u64), "{outcome}");
    let mean = partials.iter().map(|p| p.len()).sum::<usize>() / partials.len();
    eprintln!(
        "{analysis}: aggregated {N} partials (mean {mean} bytes) in {:.1} s wall, {:.1} s in fetch+merge+state",
        outcome["wall_seconds"].as_f64().unwrap(),
        outcome["merge_seconds"].as_f64().unwrap()
    );
}

#[test]
#[ignore = "measurement, about a minute"]
fn measure_aggregate_10000_os_distribution_partials() {
    measure_merge_of_10000_partials("os-distribution.wasm");
}

#[test]
#[ignore = "measurement; needs dashboard.wasm"]
fn measure_aggregate_10000_dashboard_partials() {
    if !analyses_dir().join("dashboard.wasm").is_file() {
        eprintln!("no dashboard.wasm: skipped");
        return;
    }
    measure_merge_of_10000_partials("dashboard.wasm");
}
