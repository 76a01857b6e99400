//! `spotmill serve`.

use std::path::PathBuf;

use spotmill::serve::{Server, Site};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The --output folder of a run of the dashboard analysis (holds versions.json).
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on; the default (loopback) keeps the data on this machine.
    /// Port 0 picks a free port (the URL printed tells which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
}

pub fn execute(args: &ServeArgs) -> anyhow::Result<i32> {
    let site = Site::open(&args.dir)?;
    let server = Server::bind(site, &args.addr)?;
    if !server.local_addr()?.ip().is_loopback() {
        eprintln!(
            "warning: listening on {}, not a loopback address: anyone who can reach it can read the data",
            server.local_addr()?
        );
    }
    // One line on stdout, flushed at once: scripts (and the browser test) read the URL here.
    println!("serving {} at {}", args.dir.display(), server.url()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    eprintln!("press Ctrl-C to stop");
    server.run()?;
    Ok(0)
}
