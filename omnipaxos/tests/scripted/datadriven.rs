//! The script format and its runner, in the manner of etcd raft's `testdata/*.txt`.
//!
//! A script is a sequence of *cases*. Each case is one command line, a line `----`, and the
//! expected output, which ends at the first blank line (outputs never contain blank lines; an
//! empty output is written `ok`). Between cases, blank lines and lines starting with `#` are
//! comments; they are kept as they are when the expected blocks are rewritten.
//!
//! ```text
//! # A comment explaining the next step.
//! tick all 10
//! ----
//! t10: 1->2 HeartbeatRequest round=1
//! ```
//!
//! With the environment variable `REWRITE` set, the expected blocks are replaced with what the
//! commands print (then *read them*: a rewritten block is only right if the rule says so).
//! Otherwise every case whose output differs is reported with its file, line and a line diff;
//! the script goes on after a mismatch (the state does not depend on what was expected), so one
//! run shows every difference.

use std::{fmt::Write as _, fs, path::Path};

/// One element of a script file.
enum Item {
    /// A comment or blank line between cases, kept verbatim.
    Text(String),
    Case(Case),
}

struct Case {
    /// 1-based line of the command.
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn parse(text: &str, file: &str) -> Result<Vec<Item>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.starts_with('#') {
            items.push(Item::Text(l.to_string()));
            i += 1;
            continue;
        }
        let line = i + 1;
        i += 1;
        if lines.get(i).copied() != Some("----") {
            return Err(format!(
                "{file}:{line}: the command `{l}` must be followed by a line `----`"
            ));
        }
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        items.push(Item::Case(Case {
            line,
            command: l.to_string(),
            expected,
        }));
    }
    Ok(items)
}

fn render(items: &[Item]) -> String {
    let mut s = String::new();
    for item in items {
        match item {
            Item::Text(t) => {
                s.push_str(t);
                s.push('\n');
            }
            Item::Case(c) => {
                s.push_str(&c.command);
                s.push_str("\n----\n");
                for l in &c.expected {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
    }
    s
}

/// A line diff of `expected` and `actual` (longest common subsequence): `-` expected only, `+`
/// printed only, two spaces for lines both have.
pub(crate) fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "  {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", expected[i]);
            i += 1;
        }
    }
    out
}

/// What runs the commands of one script.
pub(crate) trait Interpreter {
    /// Runs `command`; returns the lines it prints (none: `ok` is printed), or a usage error
    /// (an unknown command, a bad argument), which stops the script.
    fn run(&mut self, command: &str) -> Result<Vec<String>, String>;
}

/// Runs the script `path` with `interp`, comparing (or, if `rewrite`, rewriting) every
/// expected block. Panics with every mismatch, each with its file and line.
pub(crate) fn run_file(path: &Path, interp: &mut dyn Interpreter, rewrite: bool) {
    let file = path.display().to_string();
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let mut items = parse(&text, &file).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut cases = 0;
    for item in &mut items {
        let Item::Case(case) = item else {
            continue;
        };
        cases += 1;
        let mut actual = interp
            .run(&case.command)
            .unwrap_or_else(|e| panic!("{file}:{}: `{}`: {e}", case.line, case.command));
        if actual.is_empty() {
            actual.push("ok".to_string());
        }
        for l in &actual {
            assert!(
                !l.trim().is_empty(),
                "{file}:{}: `{}` printed a blank line, which would end its block",
                case.line,
                case.command
            );
        }
        if rewrite {
            case.expected = actual;
        } else if case.expected != actual {
            failures.push(format!(
                "{file}:{}: `{}` printed something else (- expected, + printed):\n{}",
                case.line,
                case.command,
                diff(&case.expected, &actual)
            ));
        }
    }
    assert!(cases > 0, "{file} has no commands");
    if rewrite {
        let new = render(&items);
        if new != text {
            fs::write(path, new).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
        }
    } else if !failures.is_empty() {
        panic!(
            "{} of {cases} commands of {file} printed something else than expected \
             (REWRITE=1 rewrites the expected blocks; then check them against the rule):\n\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parse_and_render_round_trip() {
        let text = "# c\n\ncmd a\n----\nx\ny\n\n# d\ncmd b\n----\nok\n";
        let items = parse(text, "f").unwrap();
        assert_eq!(render(&items), text);
        let cases: Vec<(usize, &str, usize)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Case(c) => Some((c.line, c.command.as_str(), c.expected.len())),
                Item::Text(_) => None,
            })
            .collect();
        assert_eq!(cases, vec![(3, "cmd a", 2), (9, "cmd b", 1)]);
    }

    #[test]
    fn a_command_without_separator_is_an_error() {
        let e = parse("cmd a\nx\n", "f").err().unwrap();
        assert!(e.contains("f:1"), "{e}");
    }

    /// Echoes its command's arguments, one per line.
    struct Echo;

    impl Interpreter for Echo {
        fn run(&mut self, command: &str) -> Result<Vec<String>, String> {
            match command.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["echo", rest @ ..] => Ok(rest.iter().map(|s| s.to_string()).collect()),
                _ => Err(format!("unknown command `{command}`")),
            }
        }
    }

    fn script(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn a_mismatch_names_the_file_and_line_with_a_diff() {
        let f = script("# c\necho a b\n----\na\nb\n\necho x\n----\ny\n");
        let path = f.path().to_path_buf();
        let err = std::panic::catch_unwind(move || run_file(&path, &mut Echo, false))
            .expect_err("the second case does not match");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        let at = format!("{}:7: `echo x`", f.path().display());
        assert!(msg.contains(&at), "{msg}");
        assert!(msg.contains("+ x\n- y\n"), "{msg}");
        assert!(msg.contains("1 of 2 commands"), "{msg}");
    }

    #[test]
    fn rewrite_replaces_the_blocks_and_keeps_the_comments() {
        let f = script("# c\necho a b\n----\nold\n\n# d\necho\n----\n");
        run_file(f.path(), &mut Echo, true);
        let new = fs::read_to_string(f.path()).unwrap();
        assert_eq!(new, "# c\necho a b\n----\na\nb\n\n# d\necho\n----\nok\n");
        // And it passes now.
        run_file(f.path(), &mut Echo, false);
    }

    #[test]
    fn a_usage_error_stops_the_script_at_its_line() {
        let f = script("echo a\n----\na\n\nfrobnicate\n----\nok\n");
        let path = f.path().to_path_buf();
        let err = std::panic::catch_unwind(move || run_file(&path, &mut Echo, false))
            .expect_err("an unknown command");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains(":5: `frobnicate`: unknown command"), "{msg}");
    }

    #[test]
    fn diff_marks_what_differs() {
        let d = diff(&v(&["a", "b", "c"]), &v(&["a", "x", "c"]));
        assert_eq!(d, "  a\n+ x\n- b\n  c\n");
        assert_eq!(diff(&v(&[]), &v(&["a"])), "+ a\n");
    }
}
