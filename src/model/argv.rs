//! A job's command line, held in one allocation for the daemon's whole life.
//!
//! Every job keeps its argv as long as the daemon runs (10,000 jobs hold 10,000 of them), and
//! a list of strings costs an allocation per argument plus one for the list: a `["true"]` job
//! took two heap blocks (64 bytes), a robot job's ten arguments eleven. Here the arguments are
//! one string, separated by NUL, which no argument can hold: no program can be passed one
//! (`execve` takes C strings; Windows' command line ends at one), and the config refuses
//! such an argument (`logic::config::job`) before a job is made.

use std::fmt;

/// The arguments of a job's command, the program first. Never empty in a job: the config
/// requires a program.
#[derive(Clone, PartialEq, Eq)]
pub struct Argv(Box<str>);

/// What separates the arguments inside an [`Argv`].
const SEP: char = '\0';

impl Argv {
    /// The arguments, the program first.
    pub(crate) fn iter(&self) -> std::str::Split<'_, char> {
        self.0.split(SEP)
    }

    /// The `i`th argument (0: the program).
    #[cfg(test)]
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.iter().nth(i)
    }

    /// How many arguments, the program counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }

    /// The same arguments with another program first (a path: never a NUL in it).
    pub(crate) fn with_program(&self, program: &str) -> Argv {
        assert!(!program.contains(SEP), "a program with a NUL: {program:?}");
        let rest = self.0.find(SEP).map_or("", |i| &self.0[i..]);
        Argv(format!("{program}{rest}").into_boxed_str())
    }

    /// The arguments, one string each.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<String> {
        self.iter().map(String::from).collect()
    }
}

impl From<Vec<String>> for Argv {
    /// Panics if an argument holds a NUL: the config refuses those, and nothing else makes
    /// an argv of one.
    fn from(args: Vec<String>) -> Argv {
        assert!(
            !args.iter().any(|a| a.contains(SEP)),
            "an argument with a NUL: {args:?}"
        );
        Argv(args.join("\0").into_boxed_str())
    }
}

impl fmt::Debug for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Argv {
        Argv::from(a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn gives_back_each_argument_as_it_was_given_empty_ones_too() {
        for args in [
            vec!["true"],
            vec!["robot", "--outputdir", "{run_dir}", "", "suite dir/x.robot"],
            vec!["sh", "-c", ""],
            vec!["", ""],
        ] {
            let a = argv(&args);
            assert_eq!(a.to_vec(), args);
            assert_eq!(a.len(), args.len());
            assert_eq!(a.get(1), args.get(1).copied());
            assert_eq!(a.get(args.len()), None);
            assert_eq!(format!("{a:?}"), format!("{args:?}"));
        }
    }

    #[test]
    fn another_program_keeps_the_arguments() {
        assert_eq!(
            argv(&["x", "-m", "robot"]).with_program("/usr/bin/robotmk-daemon"),
            argv(&["/usr/bin/robotmk-daemon", "-m", "robot"])
        );
        assert_eq!(argv(&["x"]).with_program("y"), argv(&["y"]));
    }

    #[test]
    #[should_panic(expected = "NUL")]
    fn an_argument_with_a_nul_is_not_an_argv() {
        argv(&["a\0b"]);
    }
}
