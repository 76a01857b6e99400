//! `spotmill new`: the starting point of an analysis, in Rust, Python, JavaScript or C.
//!
//! A new folder holds the os-distribution example renamed after the analysis, the SDK of
//! its language (a path dependency for Rust, a copy of the SDK files otherwise), a
//! `build.sh` that makes `<name>.wasm` with the toolchains the repository's scripts install,
//! and a README. The example and SDK files are this repository's own, embedded at compile
//! time (`include_str!`): there is one copy of each, and a change to an example changes
//! what `spotmill new` writes. The repository's path is embedded too: the Rust SDK, the WIT
//! and the toolchain scripts are used from there (`--sdk` and `--wit` override the first
//! two).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// The languages `spotmill new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    C,
}

impl Language {
    pub const ALL: [Language; 4] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::C,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::C => "c",
        }
    }

    /// The repository script that installs the language's toolchain (and builds its example).
    pub fn tools_script(self) -> &'static str {
        match self {
            Language::Rust => "scripts/build-analyses.sh",
            Language::Python => "scripts/build-guests-python.sh",
            Language::JavaScript => "scripts/build-guests-javascript.sh",
            Language::C => "scripts/build-guests-c.sh",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Language::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .with_context(|| format!("unknown language `{s}` (rust, python, javascript or c)"))
    }
}

/// Where the generated project finds what it does not copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// This repository (its `scripts/` install the toolchains).
    pub repo: PathBuf,
    /// The Rust SDK crate `spotmill-guest` (a path dependency of Rust projects).
    pub sdk: PathBuf,
    /// The WIT folder (Python, JavaScript and C builds read it; the Rust SDK embeds its own).
    pub wit: PathBuf,
}

impl Sources {
    /// The repository this binary was built from (known at compile time).
    pub fn repo_dir() -> PathBuf {
        let runner = Path::new(env!("CARGO_MANIFEST_DIR"));
        runner.parent().unwrap_or(runner).to_path_buf()
    }

    /// This repository's SDK and WIT, or the given ones; made absolute and checked.
    pub fn new(sdk: Option<&Path>, wit: Option<&Path>) -> Result<Sources> {
        let repo = Self::repo_dir();
        let sdk = absolute(sdk.map_or_else(|| repo.join("guest-sdk"), Path::to_path_buf))?;
        let wit = absolute(wit.map_or_else(|| repo.join("wit"), Path::to_path_buf))?;
        if !sdk.join("Cargo.toml").is_file() {
            bail!(
                "the Rust SDK {} has no Cargo.toml (--sdk names the spotmill-guest crate's folder)",
                sdk.display()
            );
        }
        if !wit.exists() {
            bail!(
                "the WIT {} does not exist (--wit names the folder of analysis.wit)",
                wit.display()
            );
        }
        Ok(Sources { repo, sdk, wit })
    }
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    let path = std::path::absolute(&path)
        .with_context(|| format!("cannot make {} absolute", path.display()))?;
    // Without `..` and symlinks when it exists (clearer in Cargo.toml and build.sh).
    Ok(path.canonicalize().unwrap_or(path))
}

/// One file of a project: its path in the folder and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    pub path: String,
    pub contents: String,
    pub executable: bool,
}

/// A project written by [`create`].
#[derive(Debug, Clone)]
pub struct Created {
    pub language: Language,
    pub name: String,
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    /// The build script (`dir/build.sh`).
    pub build: PathBuf,
    /// The component the build writes (`dir/<name>.wasm`).
    pub wasm: PathBuf,
}

/// Checks that `name` can name an analysis in `language`: lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter and ending with a letter or digit; not a keyword of
/// the language nor a name the SDK or the generated bindings use.
pub fn check_name(language: Language, name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!(
            "invalid analysis name `{name}`: use lowercase ASCII letters, digits, `-` and `_`, \
             starting with a letter and ending with a letter or digit (at most 64 characters)"
        );
    }
    let snake = name.replace('-', "_");
    // Names of the SDK's own files and of the generated bindings, in every language.
    const TAKEN: &[&str] = &["spotmill", "spotmill_guest", "analysis", "wit_world"];
    if TAKEN.contains(&snake.as_str()) || snake.starts_with("componentize_py") {
        bail!("the analysis name `{name}` is taken by the SDK or its generated bindings");
    }
    let keyword = match language {
        Language::Rust => RUST_RESERVED.contains(&snake.as_str()),
        Language::Python => PYTHON_RESERVED.contains(&snake.as_str()),
        Language::JavaScript | Language::C => false,
    };
    if keyword {
        bail!(
            "the analysis name `{name}` is reserved in {language} (a keyword, or a module \
             the SDK needs): choose another"
        );
    }
    Ok(())
}

/// Rust keywords and the crates cargo refuses as package names.
const RUST_RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// Python keywords, and the standard modules the SDK imports (directly or through `json`
/// and `decimal`): an analysis module of that name would shadow them.
const PYTHON_RESERVED: &[&str] = &[
    "false",
    "none",
    "true",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "json",
    "decimal",
    "re",
    "codecs",
    "numbers",
    "math",
    "collections",
    "functools",
    "operator",
    "sys",
    "os",
    "types",
    "typing",
    "abc",
    "enum",
    "contextvars",
    "keyword",
    "reprlib",
    "itertools",
    "copy",
    "io",
    "encodings",
    "warnings",
    "builtins",
    "locale",
    "string",
    "struct",
    "heapq",
    "weakref",
];

/// The analysis type (Rust) or class (Python) of a name: `my-analysis` -> `MyAnalysis`.
/// A name that would shadow what the example uses gets an `Analysis` suffix.
pub fn type_name(name: &str) -> String {
    let mut camel = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            camel.push(first.to_ascii_uppercase());
            camel.extend(chars);
        }
    }
    const USED: &[&str] = &[
        "Analysis",
        "OutputFile",
        "Submission",
        "BTreeMap",
        "String",
        "Vec",
        "Result",
        "Ok",
        "Err",
        "Some",
        "None",
        "Option",
        "Default",
        "Self",
        "Box",
        "Reject",
    ];
    if USED.contains(&camel.as_str()) {
        camel.push_str("Analysis");
    }
    camel
}

// The repository's files, embedded: one copy of each.
const RUST_EXAMPLE: &str = include_str!("../../analyses/os-distribution/src/lib.rs");
const RUST_WORKSPACE: &str = include_str!("../../analyses/Cargo.toml");
const RUST_LOCK: &str = include_str!("../../analyses/Cargo.lock");
const PYTHON_SDK: &str = include_str!("../../guest-sdk/python/spotmill.py");
const PYTHON_EXAMPLE: &str = include_str!("../../guest-sdk/python/os_distribution.py");
const JAVASCRIPT_SDK: &str = include_str!("../../guest-sdk/javascript/spotmill.js");
const JAVASCRIPT_EXAMPLE: &str = include_str!("../../guest-sdk/javascript/os-distribution.js");
const C_SDK_HEADER: &str = include_str!("../../guest-sdk/c/spotmill.h");
const C_SDK_SOURCE: &str = include_str!("../../guest-sdk/c/spotmill.c");
const C_EXAMPLE: &str = include_str!("../../guest-sdk/c/os-distribution.c");

// The templates of what has no counterpart in the repository.
const CHECK_AND_RUN: &str = include_str!("../templates/check-and-run.md");
const RUST_BUILD: &str = include_str!("../templates/rust/build.sh");
const RUST_README: &str = include_str!("../templates/rust/README.md");
const PYTHON_BUILD: &str = include_str!("../templates/python/build.sh");
const PYTHON_README: &str = include_str!("../templates/python/README.md");
const JAVASCRIPT_BUILD: &str = include_str!("../templates/javascript/build.sh");
const JAVASCRIPT_README: &str = include_str!("../templates/javascript/README.md");
const C_BUILD: &str = include_str!("../templates/c/build.sh");
const C_README: &str = include_str!("../templates/c/README.md");

/// The example's output file, renamed after the analysis.
const EXAMPLE_OUTPUT: &str = "os-distribution.json";
const EXAMPLE_TYPE: &str = "OsDistribution";

/// The files of a new project (nothing written).
pub fn render(language: Language, name: &str, sources: &Sources) -> Result<Vec<ProjectFile>> {
    check_name(language, name)?;
    let vars = Vars::new(language, name, sources)?;
    let output = format!("{name}.json");
    let twin = |lang: &str, example: &str| {
        (
            format!(
                "The {lang} twin of analyses/os-distribution (same output bytes on the same data)."
            ),
            format!("Made by `spotmill new` from the os-distribution example ({example})."),
        )
    };
    let file = |path: &str, contents: String| ProjectFile {
        path: path.to_owned(),
        contents,
        executable: false,
    };
    let build = |template: &str| ProjectFile {
        path: "build.sh".to_owned(),
        contents: vars.fill(template),
        executable: true,
    };
    let readme = |template: &str| {
        file(
            "README.md",
            vars.fill(&format!("{template}{CHECK_AND_RUN}")),
        )
    };
    let mut files = match language {
        Language::Rust => vec![
            file("Cargo.toml", rust_manifest(name, &sources.sdk)?),
            file("Cargo.lock", RUST_LOCK.to_owned()),
            file(
                "src/lib.rs",
                rewrite(
                    "analyses/os-distribution/src/lib.rs",
                    RUST_EXAMPLE,
                    &[(EXAMPLE_TYPE, &vars.type_name), (EXAMPLE_OUTPUT, &output)],
                )?,
            ),
            build(RUST_BUILD),
            readme(RUST_README),
            file(".gitignore", "/target\n/*.wasm\n".to_owned()),
        ],
        Language::Python => {
            let (from, to) = twin("Python", "guest-sdk/python/os_distribution.py");
            vec![
                file("spotmill.py", PYTHON_SDK.to_owned()),
                file(
                    &format!("{}.py", vars.module),
                    rewrite(
                        "guest-sdk/python/os_distribution.py",
                        PYTHON_EXAMPLE,
                        &[
                            (&from, &to),
                            (EXAMPLE_TYPE, &vars.type_name),
                            (EXAMPLE_OUTPUT, &output),
                        ],
                    )?,
                ),
                build(PYTHON_BUILD),
                readme(PYTHON_README),
                file(".gitignore", "/*.wasm\n__pycache__/\n".to_owned()),
            ]
        }
        Language::JavaScript => {
            let (from, to) = twin("JavaScript", "guest-sdk/javascript/os-distribution.js");
            vec![
                file("spotmill.js", JAVASCRIPT_SDK.to_owned()),
                file(
                    &format!("{name}.js"),
                    rewrite(
                        "guest-sdk/javascript/os-distribution.js",
                        JAVASCRIPT_EXAMPLE,
                        &[(&from, &to), (EXAMPLE_OUTPUT, &output)],
                    )?,
                ),
                build(JAVASCRIPT_BUILD),
                readme(JAVASCRIPT_README),
                file(".gitignore", "/*.wasm\n".to_owned()),
            ]
        }
        Language::C => {
            let (from, to) = twin("C", "guest-sdk/c/os-distribution.c");
            vec![
                file("spotmill.h", C_SDK_HEADER.to_owned()),
                file("spotmill.c", C_SDK_SOURCE.to_owned()),
                file(
                    &format!("{name}.c"),
                    rewrite(
                        "guest-sdk/c/os-distribution.c",
                        C_EXAMPLE,
                        &[(&from, &to), (EXAMPLE_OUTPUT, &output)],
                    )?,
                ),
                build(C_BUILD),
                readme(C_README),
                file(".gitignore", "/*.wasm\n".to_owned()),
            ]
        }
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Writes a new project into `parent/name`, which must not exist or be empty.
pub fn create(language: Language, name: &str, parent: &Path, sources: &Sources) -> Result<Created> {
    let files = render(language, name, sources)?;
    let dir = absolute(parent.to_path_buf())?.join(name);
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a folder", dir.display());
        }
        let mut entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read the folder {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "refusing to overwrite {}: the folder is not empty (choose another name or --dir)",
                dir.display()
            );
        }
    }
    for file in &files {
        let path = dir.join(&file.path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create the folder {}", folder.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    Ok(Created {
        language,
        name: name.to_owned(),
        build: dir.join("build.sh"),
        wasm: dir.join(format!("{name}.wasm")),
        files: files.into_iter().map(|f| f.path).collect(),
        dir,
    })
}

/// What to do after [`create`]: build, validate, run (`spotmill` is the command to print).
pub fn next_steps(created: &Created, spotmill: &str) -> String {
    let dir = created.dir.display();
    let wasm = created.wasm.display();
    let name = &created.name;
    let tools = match created.language {
        Language::Rust => "cargo and the wasm32-wasip2 target (build.sh adds it)".to_owned(),
        language => format!(
            "the toolchain of {} (build.sh runs it when the tools are missing)",
            language.tools_script()
        ),
    };
    format!(
        "created {dir} ({language}): {files}\n\
         \n\
         next steps:\n  \
           bash {dir}/build.sh    # uses {tools}\n  \
           {spotmill} validate {wasm}\n  \
           {spotmill} gen --out data/ --submissions 2000 --seed 1\n  \
           {spotmill} run --analysis {wasm} --input data/ --output out/\n  \
           cat out/{name}.json\n",
        language = created.language,
        files = created.files.join(", "),
    )
}

/// The values the templates name as `@NAME@`.
struct Vars {
    name: String,
    module: String,
    lib: String,
    type_name: String,
    repo: String,
    sdk: String,
    wit: String,
}

impl Vars {
    fn new(language: Language, name: &str, sources: &Sources) -> Result<Vars> {
        let utf8 = |path: &Path| {
            path.to_str().map(str::to_owned).with_context(|| {
                format!(
                    "the path {} is not UTF-8: it cannot go into the {language} project",
                    path.display()
                )
            })
        };
        Ok(Vars {
            name: name.to_owned(),
            module: name.replace('-', "_"),
            lib: name.replace('-', "_"),
            type_name: type_name(name),
            repo: utf8(&sources.repo)?,
            sdk: utf8(&sources.sdk)?,
            wit: utf8(&sources.wit)?,
        })
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("@NAME@", &self.name)
            .replace("@MODULE@", &self.module)
            .replace("@LIB@", &self.lib)
            .replace("@TYPE@", &self.type_name)
            .replace("@REPO_SH@", &shell_quote(&self.repo))
            .replace("@WIT_SH@", &shell_quote(&self.wit))
            .replace("@REPO@", &self.repo)
            .replace("@SDK@", &self.sdk)
            .replace("@WIT@", &self.wit)
    }
}

/// `text` with each `(from, to)` replaced everywhere; every `from` must occur (an example
/// that changed shape is an error here, not a silently different project).
fn rewrite(origin: &str, text: &str, replacements: &[(&str, &str)]) -> Result<String> {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        if !text.contains(from) {
            bail!("{origin} no longer contains `{from}`: update runner/src/new.rs");
        }
        text = text.replace(from, to);
    }
    Ok(text)
}

/// A word for bash: as is when it is plain, else single-quoted.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Cargo.toml of a Rust project: the example's settings (edition, rust-version from
/// analyses/Cargo.toml's [workspace.package]), a cdylib on the SDK, a [workspace] of its
/// own and the analyses' release profile (copied as written, comments included).
fn rust_manifest(name: &str, sdk: &Path) -> Result<String> {
    let workspace: toml::Table =
        toml::from_str(RUST_WORKSPACE).context("analyses/Cargo.toml is not TOML")?;
    let package = workspace
        .get("workspace")
        .and_then(|w| w.get("package"))
        .context("analyses/Cargo.toml has no [workspace.package]")?;
    let field = |key: &str| {
        package
            .get(key)
            .and_then(toml::Value::as_str)
            .with_context(|| format!("analyses/Cargo.toml has no workspace.package.{key}"))
    };
    let edition = field("edition")?;
    let rust_version = field("rust-version")?;
    let profile = toml_section(RUST_WORKSPACE, "[profile.release]")
        .context("analyses/Cargo.toml has no [profile.release]")?;
    let sdk = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk.display()))?;
    let sdk = toml::Value::String(sdk.to_owned());
    Ok(format!(
        "# A Spotmill analysis (made by `spotmill new --lang rust {name}`): a WebAssembly\n\
         # component for wasm32-wasip2, built by build.sh.\n\
         [package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         edition = \"{edition}\"\n\
         rust-version = \"{rust_version}\"\n\
         publish = false\n\
         \n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         \n\
         [dependencies]\n\
         spotmill-guest = {{ path = {sdk} }}\n\
         \n\
         # A workspace of its own: the crate builds standalone, wherever this folder is.\n\
         [workspace]\n\
         \n\
         {profile}"
    ))
}

/// The text of a TOML section, from its header to the next header (or the end).
fn toml_section<'a>(text: &'a str, header: &str) -> Option<&'a str> {
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        match start {
            None if trimmed == header => start = Some(offset),
            Some(s) if trimmed.starts_with('[') => return Some(&text[s..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|s| &text[s..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name(Language::Rust, "my-analysis").is_ok());
        assert!(check_name(Language::Python, "crash_rate2").is_ok());
        for bad in [
            "", "My", "1a", "a-", "a b", "a/b", "../x", "spotmill", "analysis",
        ] {
            assert!(check_name(Language::C, bad).is_err(), "{bad}");
        }
        assert!(check_name(Language::Rust, "fn").is_err());
        assert!(check_name(Language::Python, "json").is_err());
        assert!(check_name(Language::JavaScript, "json").is_ok());
        assert_eq!(type_name("my-crash_rate"), "MyCrashRate");
        assert_eq!(type_name("string"), "StringAnalysis");
    }

    #[test]
    fn quoting_and_sections() {
        assert_eq!(shell_quote("/a/b-c"), "/a/b-c");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        let text = "[a]\nx = 1\n\n[profile.release]\n# c\nlto = true\n\n[b]\ny = 2\n";
        assert_eq!(
            toml_section(text, "[profile.release]"),
            Some("[profile.release]\n# c\nlto = true\n\n")
        );
        assert_eq!(
            toml_section("[profile.release]\nlto = true\n", "[profile.release]"),
            Some("[profile.release]\nlto = true\n")
        );
    }
}
