//! Progress bars (indicatif): drawn on stderr only when it is a terminal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spotmill::task::Counters;

fn target(hidden: bool) -> ProgressDrawTarget {
    if hidden {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar counting items (e.g. generated submissions).
pub fn count_bar(total: u64, what: &str, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target(hidden));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// The bar of a run: compressed bytes read over the total, with records and uncompressed
/// throughput in its message, refreshed from the workers' counters.
pub struct RunProgress {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl RunProgress {
    pub fn start(total_compressed: u64, tasks: u64, counters: Arc<Counters>, hidden: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_compressed), target(hidden));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} compressed, {msg} (ETA {eta})",
            )
            .expect("valid template"),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let bar = bar.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let seconds = started.elapsed().as_secs_f64().max(1e-3);
                    let records = counters.records.load(Ordering::Relaxed);
                    let unpacked = counters.bytes_uncompressed.load(Ordering::Relaxed);
                    bar.set_position(counters.bytes_compressed.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "{records} records ({:.0}/s), {:.0} MB/s uncompressed, {} quarantined, {tasks} tasks",
                        records as f64 / seconds,
                        unpacked as f64 / 1e6 / seconds,
                        counters.quarantined.load(Ordering::Relaxed),
                    ));
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        RunProgress {
            bar,
            stop,
            ticker: Some(ticker),
        }
    }

    /// Prints a line above the bar (a task that failed, say).
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        self.bar.finish_and_clear();
    }
}
