//! The rule catalogue: codes, names, families, descriptions and fix hints.

use std::fmt;
use std::str::FromStr;

/// The anti-pattern family a rule belongs to (the document's three, plus Go's struct and loop
/// checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The context is not passed on: work is started without it (`TF00x`).
    NotPassed,
    /// The context is not listened to: waits and loops ignore it (`TF01x`).
    NotListened,
    /// The context is released too early: its guard dies before the work it guards (`TF02x`).
    ReleasedEarly,
    /// Where contexts live: stored in structs, derived in loops (`TF03x`).
    Containment,
}

impl Family {
    /// A short human name, as used in the docs and the SARIF rule properties.
    pub fn name(self) -> &'static str {
        match self {
            Family::NotPassed => "context not passed",
            Family::NotListened => "context not listened to",
            Family::ReleasedEarly => "context released too early",
            Family::Containment => "context containment",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One lint rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `TF001`: a task spawned with `tokio::spawn` (or `spawn_blocking`, `spawn_local`,
    /// `std::thread::spawn`) while a context is in scope, without the context.
    SpawnWithoutContext,
    /// `TF002`: a fresh context (`Context::background()`, `Context::default()` or a root
    /// derived from one) passed to a call while the function has an inherited context (Go's
    /// contextcheck).
    FreshContext,
    /// `TF010`: a loop in async code that awaits but never checks the context.
    LoopNotListening,
    /// `TF011`: a long `.await` (sleep, recv, accept, ...) not raced with the context.
    AwaitNotRaced,
    /// `TF020`: a cancel guard or budget scope dropped at once (`let _ = ctx.with_timeout(..)`).
    GuardDroppedAtOnce,
    /// `TF021`: a guard or scope explicitly dropped or cancelled before later uses of its
    /// context.
    GuardDroppedBeforeUse,
    /// `TF022`: a future, stream or task that captures a child context but not its guard, and
    /// outlives the function that owns the guard.
    GuardOutlived,
    /// `TF030`: a `Context` stored in a long-lived struct field (Go's containedctx).
    ContextInStruct,
    /// `TF031`: a context re-derived from itself in a loop (Go's fatcontext).
    ContextDerivedInLoop,
}

impl Rule {
    /// Every rule, in code order.
    pub const ALL: [Rule; 9] = [
        Rule::SpawnWithoutContext,
        Rule::FreshContext,
        Rule::LoopNotListening,
        Rule::AwaitNotRaced,
        Rule::GuardDroppedAtOnce,
        Rule::GuardDroppedBeforeUse,
        Rule::GuardOutlived,
        Rule::ContextInStruct,
        Rule::ContextDerivedInLoop,
    ];

    /// The rule's code, such as `"TF020"`.
    pub fn code(self) -> &'static str {
        match self {
            Rule::SpawnWithoutContext => "TF001",
            Rule::FreshContext => "TF002",
            Rule::LoopNotListening => "TF010",
            Rule::AwaitNotRaced => "TF011",
            Rule::GuardDroppedAtOnce => "TF020",
            Rule::GuardDroppedBeforeUse => "TF021",
            Rule::GuardOutlived => "TF022",
            Rule::ContextInStruct => "TF030",
            Rule::ContextDerivedInLoop => "TF031",
        }
    }

    /// The rule's kebab-case name, such as `"guard-dropped-at-once"`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::SpawnWithoutContext => "spawn-without-context",
            Rule::FreshContext => "fresh-context",
            Rule::LoopNotListening => "loop-not-listening",
            Rule::AwaitNotRaced => "await-not-raced",
            Rule::GuardDroppedAtOnce => "guard-dropped-at-once",
            Rule::GuardDroppedBeforeUse => "guard-dropped-before-use",
            Rule::GuardOutlived => "guard-outlived",
            Rule::ContextInStruct => "context-in-struct",
            Rule::ContextDerivedInLoop => "context-derived-in-loop",
        }
    }

    /// The family the rule belongs to.
    pub fn family(self) -> Family {
        match self {
            Rule::SpawnWithoutContext | Rule::FreshContext => Family::NotPassed,
            Rule::LoopNotListening | Rule::AwaitNotRaced => Family::NotListened,
            Rule::GuardDroppedAtOnce | Rule::GuardDroppedBeforeUse | Rule::GuardOutlived => {
                Family::ReleasedEarly
            }
            Rule::ContextInStruct | Rule::ContextDerivedInLoop => Family::Containment,
        }
    }

    /// One sentence: what the rule finds.
    pub fn summary(self) -> &'static str {
        match self {
            Rule::SpawnWithoutContext => {
                "a task is spawned without the context that is in scope, so it outlives the request"
            }
            Rule::FreshContext => {
                "a fresh context is passed on while the function has one to inherit from"
            }
            Rule::LoopNotListening => "a loop awaits but never checks the context",
            Rule::AwaitNotRaced => "a long await is not raced with the context",
            Rule::GuardDroppedAtOnce => "a cancel guard or budget scope is dropped at once",
            Rule::GuardDroppedBeforeUse => {
                "a guard or scope is dropped or cancelled before its context is used"
            }
            Rule::GuardOutlived => {
                "a future or task captures a child context but not its guard, and outlives it"
            }
            Rule::ContextInStruct => "a context is stored in a long-lived struct",
            Rule::ContextDerivedInLoop => "a context is re-derived from itself in a loop",
        }
    }

    /// A longer description: the anti-pattern, its Go peer and why it matters.
    pub fn description(self) -> &'static str {
        match self {
            Rule::SpawnWithoutContext => {
                "A function that has a Context in scope spawns a task with tokio::spawn, \
                 spawn_blocking, spawn_local or std::thread::spawn, and the task neither \
                 mentions the context nor is wrapped in ctx.scope(..)/ctx.run(..). The task is \
                 detached from the request: it keeps running after the deadline or cancel, and \
                 the task registry cannot attribute it. This is the document's 'context not \
                 passed' anti-pattern (a goroutine started without ctx)."
            }
            Rule::FreshContext => {
                "A function that inherits a Context (a parameter, Context::current(), or a child \
                 of those) passes Context::background(), Context::default() or a root derived \
                 from them to another call. The callee loses the caller's deadline, cancel \
                 signal and values. Go's contextcheck reports the same."
            }
            Rule::LoopNotListening => {
                "An async loop (loop, while, for) in a function with an inherited Context awaits \
                 but nothing in it checks the context: no is_done(), no done() in a select!, no \
                 ctx.run(..), no context passed to a callee, no stage()/downstream() admission. \
                 The loop keeps going after the request has ended: the 'not listened to' \
                 anti-pattern."
            }
            Rule::AwaitNotRaced => {
                "A potentially unbounded await (sleep, recv, accept, next, read, acquire, tick, \
                 changed, notified, connect, pending, ...) in a function with an inherited \
                 Context is neither wrapped in ctx.run(..) nor raced with ctx.done() in a \
                 select!. It blocks past the request's deadline or cancel."
            }
            Rule::GuardDroppedAtOnce => {
                "The CancelGuard of with_cancel/with_timeout/with_deadline (or the BudgetScope of \
                 stage/downstream) is bound to `_`, discarded, or dropped with the temporary \
                 tuple (`let c = ctx.with_timeout(d).0`). Dropping the guard cancels the child \
                 at once: the work it should guard runs on a cancelled context. Go's lostcancel \
                 inverted: in Rust the cancel is not lost, it happens too early."
            }
            Rule::GuardDroppedBeforeUse => {
                "A guard or budget scope is dropped (drop(g)), cancelled (g.cancel()) or finished \
                 before later statements in the same block use its context (spawn, run, stage, \
                 passing it to a call). The later work starts on a cancelled context."
            }
            Rule::GuardOutlived => {
                "A function creates a guard or scope, then returns or spawns a future, stream or \
                 task that captures the child context but not the guard. The guard is dropped \
                 when the function returns, so the future runs on a cancelled context."
            }
            Rule::ContextInStruct => {
                "A struct field holds a Context. A context belongs to one request; stored in a \
                 long-lived value it outlives the request or is shared by many. Go's \
                 containedctx. Allowed for per-request types (names ending in Request, Call or \
                 Task, types that implement Future, Stream or Body in the same file) and with an \
                 allow comment."
            }
            Rule::ContextDerivedInLoop => {
                "Inside a loop, a context declared outside the loop is reassigned from a child of \
                 itself (ctx = ctx.with_value(..), or the child of ctx.with_timeout(..)). Each \
                 iteration nests one level deeper; with a guard dropped each iteration the \
                 context is even cancelled. Go's fatcontext."
            }
        }
    }

    /// How to fix a finding of this rule.
    pub fn help(self) -> &'static str {
        match self {
            Rule::SpawnWithoutContext => {
                "spawn it with `ctx.spawn(fut)` or `ctx.spawn_named(name, fut)` so that it stops \
                 with the request, or wrap the future in `ctx.run(..)`/`ctx.scope(..)`"
            }
            Rule::FreshContext => {
                "pass the context you have (or a child: `ctx.with_timeout(..)`); use \
                 `ctx.without_cancel()` for work that must outlive the request"
            }
            Rule::LoopNotListening => {
                "check the context in the loop: `if ctx.is_done() { break }`, race the wait with \
                 `ctx.run(..)` or a `select!` on `ctx.done()`, or pass the context to the callee"
            }
            Rule::AwaitNotRaced => {
                "race it with the context: `ctx.run(fut).await?`, or `select! { _ = ctx.done() \
                 => .., r = fut => .. }`"
            }
            Rule::GuardDroppedAtOnce => {
                "bind the guard to a named variable for as long as the work runs: `let (ctx, \
                 _guard) = parent.with_timeout(..)` / `let _stage = ctx.stage(..)?`"
            }
            Rule::GuardDroppedBeforeUse => {
                "drop or cancel the guard after the last use of its context, or derive a new \
                 child for the later work"
            }
            Rule::GuardOutlived => {
                "move the guard into the future (`async move { let _guard = guard; .. }`), or \
                 return it alongside the future"
            }
            Rule::ContextInStruct => {
                "pass the context as a parameter instead; if the struct lives for one request \
                 only, name it `..Request`/`..Call`/`..Task` or add `// timefuse-lint: \
                 allow(TF030) reason`"
            }
            Rule::ContextDerivedInLoop => {
                "derive each iteration's child from the outer context into a new binding (`let \
                 (child, _g) = ctx.with_timeout(..)`) instead of reassigning the outer one"
            }
        }
    }

    /// The rule with this code (`"TF020"`, case-insensitive) or name (`"guard-dropped-at-once"`).
    pub fn from_code(code: &str) -> Option<Rule> {
        let code = code.trim();
        Rule::ALL
            .into_iter()
            .find(|r| r.code().eq_ignore_ascii_case(code) || r.name().eq_ignore_ascii_case(code))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The error of parsing a [`Rule`] from a string that is neither a code nor a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRule(pub String);

impl fmt::Display for UnknownRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown rule `{}` (expected a code such as TF020 or a name such as guard-dropped-at-once)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRule {}

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Rule, UnknownRule> {
        Rule::from_code(s).ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_code(rule.code()), Some(rule));
            assert_eq!(Rule::from_code(rule.name()), Some(rule));
            assert_eq!(rule.code().to_lowercase().parse::<Rule>(), Ok(rule));
        }
        let mut codes: Vec<_> = Rule::ALL.iter().map(|r| r.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), Rule::ALL.len());
        assert!("TF999".parse::<Rule>().is_err());
    }

    #[test]
    fn families_follow_the_code_ranges() {
        for rule in Rule::ALL {
            let expected = match &rule.code()[..4] {
                "TF00" => Family::NotPassed,
                "TF01" => Family::NotListened,
                "TF02" => Family::ReleasedEarly,
                _ => Family::Containment,
            };
            assert_eq!(rule.family(), expected, "{rule}");
        }
    }
}
