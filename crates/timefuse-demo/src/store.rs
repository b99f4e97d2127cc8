//! Where the money lives: accounts, charges, ledger entries and orders, behind the [`Store`]
//! trait, with [`SqliteStore`] (rusqlite, bundled SQLite) as the default.
//!
//! Each service owns its own database file, as it would in production: `orders.db` (order),
//! `deduct.db` (accounts and charges), `ledger.db` (ledger entries). Every money-moving call
//! carries the order's idempotency key:
//!
//! - [`Store::charge`] debits an account at most once per key (the key is the primary key of
//!   `charges`), and refuses a key that reconciliation has **voided**;
//! - [`Store::resolve_charge`] is reconciliation's fence: it answers "charged" if the key was
//!   charged, and otherwise writes a `void` row so that the key can never be charged later, by a
//!   call still in flight or a retry;
//! - [`Store::record_entry`] writes the ledger entry at most once per key.
//!
//! [`Store::audit`] checks the money after a run. A PostgreSQL store implements the same trait
//! over one connection pool per service database (the SQL is plain; `BEGIN IMMEDIATE` becomes
//! `SELECT … FOR UPDATE` on the account row).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A store operation failed.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// The result type of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// The lifecycle of an order in `orders.db`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created; the chain is working on it.
    Pending,
    /// Charged and recorded.
    Completed,
    /// Answered with the fallback voucher; never charged.
    Degraded,
    /// Refused (risk declined, insufficient funds, shed): never charged.
    Rejected,
    /// Ended without a charge (its key voided by reconciliation).
    Failed,
    /// Its handler ended with the charge in doubt: reconciliation settles it.
    Unknown,
}

impl OrderStatus {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Completed => "completed",
            OrderStatus::Degraded => "degraded",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Failed => "failed",
            OrderStatus::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> OrderStatus {
        match s {
            "completed" => OrderStatus::Completed,
            "degraded" => OrderStatus::Degraded,
            "rejected" => OrderStatus::Rejected,
            "failed" => OrderStatus::Failed,
            "unknown" => OrderStatus::Unknown,
            _ => OrderStatus::Pending,
        }
    }

    /// True for the states reconciliation must settle.
    pub fn unsettled(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Unknown)
    }
}

/// One order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    /// The order id.
    pub order_id: String,
    /// Its idempotency key.
    pub idem_key: String,
    /// The paying account.
    pub account: String,
    /// The amount, in cents.
    pub amount: i64,
    /// Its status.
    pub status: OrderStatus,
}

/// What [`Store::charge`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Debited now.
    Charged,
    /// Already debited under this key: nothing done (idempotent success).
    AlreadyCharged,
    /// The key was voided by reconciliation: nothing done, and never will be.
    Voided,
    /// Not enough money: nothing done.
    Insufficient,
}

/// The money check after a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Audit {
    /// The sum of the opening balances.
    pub opening_total: i64,
    /// The sum of the balances now.
    pub balances_total: i64,
    /// The sum of the charges.
    pub charged_total: i64,
    /// Charges made.
    pub charges: u64,
    /// Keys voided by reconciliation.
    pub voided: u64,
    /// The sum of the ledger entries.
    pub ledger_total: i64,
    /// Ledger entries.
    pub entries: u64,
    /// Orders with more than one charge.
    pub double_charged: Vec<String>,
    /// Charges without their ledger entry.
    pub charges_without_entry: Vec<String>,
    /// Ledger entries without a charge, or with another amount.
    pub entries_without_charge: Vec<String>,
    /// Orders answered with the voucher that were charged anyway.
    pub degraded_charged: Vec<String>,
    /// Orders still pending or unknown.
    pub unsettled: Vec<String>,
    /// Orders by final status.
    pub orders_by_status: BTreeMap<OrderStatus, u64>,
    /// Every order with a charge (not serialized).
    #[serde(skip)]
    pub charged_orders: BTreeSet<String>,
}

impl Audit {
    /// Opening balances = balances now + charges, and ledger total = charges.
    pub fn conserved(&self) -> bool {
        self.opening_total == self.balances_total + self.charged_total
            && self.ledger_total == self.charged_total
    }

    /// Every invariant holds.
    pub fn ok(&self) -> bool {
        self.conserved()
            && self.double_charged.is_empty()
            && self.charges_without_entry.is_empty()
            && self.entries_without_charge.is_empty()
            && self.degraded_charged.is_empty()
            && self.unsettled.is_empty()
    }

    /// The check as printed after every run.
    pub fn lines(&self) -> Vec<(String, bool)> {
        let first = |v: &Vec<String>| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", v[0])
            }
        };
        vec![
            (
                format!(
                    "money conserved: opening {} = balances {} + charged {}; ledger {} = charged",
                    cents(self.opening_total),
                    cents(self.balances_total),
                    cents(self.charged_total),
                    cents(self.ledger_total)
                ),
                self.conserved(),
            ),
            (
                format!(
                    "no order charged twice: {} found{}",
                    self.double_charged.len(),
                    first(&self.double_charged)
                ),
                self.double_charged.is_empty(),
            ),
            (
                format!(
                    "every charge has its ledger entry: {} charges, {} entries, {} missing, {} stray{}",
                    self.charges,
                    self.entries,
                    self.charges_without_entry.len(),
                    self.entries_without_charge.len(),
                    first(&self.charges_without_entry)
                ),
                self.charges_without_entry.is_empty() && self.entries_without_charge.is_empty(),
            ),
            (
                format!(
                    "every degraded order charged nothing: {} degraded, {} charged{}",
                    self.orders_by_status
                        .get(&OrderStatus::Degraded)
                        .copied()
                        .unwrap_or(0),
                    self.degraded_charged.len(),
                    first(&self.degraded_charged)
                ),
                self.degraded_charged.is_empty(),
            ),
            (
                format!(
                    "every order settled: {} pending or unknown{}",
                    self.unsettled.len(),
                    first(&self.unsettled)
                ),
                self.unsettled.is_empty(),
            ),
        ]
    }
}

/// Cents as `12 345.67`.
pub fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let c = c.unsigned_abs();
    let units = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{:02}", c % 100)
}

/// The accounts, charges, ledger and orders of the payment chain.
///
/// Every method is short and synchronous (an embedded database answers in microseconds); the
/// services call it while holding a pooled connection.
pub trait Store: Send + Sync + 'static {
    /// Creates `accounts` accounts (`acct-0000` …) with `balance` cents each, if not there.
    fn open_accounts(&self, accounts: u32, balance: i64) -> StoreResult<()>;
    /// Records a new order as pending. Idempotent per order id.
    fn create_order(&self, order: &OrderRow) -> StoreResult<()>;
    /// Moves an order from one of `from` to `to`; false if it was in another state.
    fn set_order_status(
        &self,
        order_id: &str,
        from: &[OrderStatus],
        to: OrderStatus,
    ) -> StoreResult<bool>;
    /// Debits `amount` from `account` once per `key`.
    fn charge(
        &self,
        key: &str,
        order_id: &str,
        account: &str,
        amount: i64,
    ) -> StoreResult<ChargeOutcome>;
    /// Reconciliation's fence: true if `key` is charged; else voids it for good and answers
    /// false.
    fn resolve_charge(&self, key: &str, order_id: &str) -> StoreResult<bool>;
    /// Writes the ledger entry of `key` once; true if written now.
    fn record_entry(
        &self,
        key: &str,
        order_id: &str,
        account: &str,
        amount: i64,
    ) -> StoreResult<bool>;
    /// Orders still pending or unknown.
    fn unsettled_orders(&self) -> StoreResult<Vec<OrderRow>>;
    /// Checks the money.
    fn audit(&self) -> StoreResult<Audit>;
}

/// The default store: one SQLite file per service database, in WAL mode, under one folder.
/// Several processes may open the same folder (the `--processes` mode).
#[derive(Debug)]
pub struct SqliteStore {
    dir: PathBuf,
    orders: Mutex<Connection>,
    deduct: Mutex<Connection>,
    ledger: Mutex<Connection>,
}

/// The state of the charge with idempotency key `key` (`charged`, `voided`), if there is one.
fn charge_state(tx: &rusqlite::Transaction<'_>, key: &str) -> StoreResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT state FROM charges WHERE idem_key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    Ok(conn)
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) the databases under `dir`.
    pub fn open(dir: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let orders = open(&dir.join("orders.db"))?;
        orders.execute_batch(
            "CREATE TABLE IF NOT EXISTS orders (
                order_id TEXT PRIMARY KEY,
                idem_key TEXT NOT NULL UNIQUE,
                account TEXT NOT NULL,
                amount INTEGER NOT NULL,
                status TEXT NOT NULL,
                created_us INTEGER NOT NULL,
                reconciled INTEGER NOT NULL DEFAULT 0
            );",
        )?;
        let deduct = open(&dir.join("deduct.db"))?;
        deduct.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (
                id TEXT PRIMARY KEY,
                balance INTEGER NOT NULL CHECK (balance >= 0)
            );
            CREATE TABLE IF NOT EXISTS opening (id TEXT PRIMARY KEY, balance INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS charges (
                idem_key TEXT PRIMARY KEY,
                order_id TEXT NOT NULL,
                account TEXT NOT NULL,
                amount INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('charged', 'void')),
                at_us INTEGER NOT NULL
            );",
        )?;
        let ledger = open(&dir.join("ledger.db"))?;
        ledger.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                idem_key TEXT PRIMARY KEY,
                order_id TEXT NOT NULL,
                account TEXT NOT NULL,
                amount INTEGER NOT NULL,
                at_us INTEGER NOT NULL
            );",
        )?;
        Ok(SqliteStore {
            dir,
            orders: Mutex::new(orders),
            deduct: Mutex::new(deduct),
            ledger: Mutex::new(ledger),
        })
    }

    /// The folder of the databases.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Store for SqliteStore {
    fn open_accounts(&self, accounts: u32, balance: i64) -> StoreResult<()> {
        let mut conn = lock(&self.deduct);
        let tx = conn.transaction()?;
        {
            let mut a =
                tx.prepare("INSERT OR IGNORE INTO accounts (id, balance) VALUES (?1, ?2)")?;
            let mut o =
                tx.prepare("INSERT OR IGNORE INTO opening (id, balance) VALUES (?1, ?2)")?;
            for i in 0..accounts {
                let id = account_name(i);
                a.execute(params![id, balance])?;
                o.execute(params![id, balance])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn create_order(&self, o: &OrderRow) -> StoreResult<()> {
        lock(&self.orders).execute(
            "INSERT OR IGNORE INTO orders (order_id, idem_key, account, amount, status, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                o.order_id,
                o.idem_key,
                o.account,
                o.amount,
                o.status.as_str(),
                now_us()
            ],
        )?;
        Ok(())
    }

    fn set_order_status(
        &self,
        order_id: &str,
        from: &[OrderStatus],
        to: OrderStatus,
    ) -> StoreResult<bool> {
        let conn = lock(&self.orders);
        let current: Option<String> = conn
            .query_row(
                "SELECT status FROM orders WHERE order_id = ?1",
                params![order_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(false);
        };
        if !from.contains(&OrderStatus::parse(&current)) {
            return Ok(false);
        }
        let n = conn.execute(
            "UPDATE orders SET status = ?2 WHERE order_id = ?1 AND status = ?3",
            params![order_id, to.as_str(), current],
        )?;
        Ok(n == 1)
    }

    fn charge(
        &self,
        key: &str,
        order_id: &str,
        account: &str,
        amount: i64,
    ) -> StoreResult<ChargeOutcome> {
        let mut conn = lock(&self.deduct);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state = charge_state(&tx, key)?;
        match state.as_deref() {
            Some("charged") => return Ok(ChargeOutcome::AlreadyCharged),
            Some(_) => return Ok(ChargeOutcome::Voided),
            None => {}
        }
        let balance: Option<i64> = tx
            .query_row(
                "SELECT balance FROM accounts WHERE id = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()?;
        if balance.is_none_or(|b| b < amount) {
            return Ok(ChargeOutcome::Insufficient);
        }
        tx.execute(
            "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1",
            params![account, amount],
        )?;
        tx.execute(
            "INSERT INTO charges (idem_key, order_id, account, amount, state, at_us)
             VALUES (?1, ?2, ?3, ?4, 'charged', ?5)",
            params![key, order_id, account, amount, now_us()],
        )?;
        tx.commit()?;
        Ok(ChargeOutcome::Charged)
    }

    fn resolve_charge(&self, key: &str, order_id: &str) -> StoreResult<bool> {
        let mut conn = lock(&self.deduct);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state = charge_state(&tx, key)?;
        let charged = match state.as_deref() {
            Some("charged") => true,
            Some(_) => false,
            None => {
                tx.execute(
                    "INSERT INTO charges (idem_key, order_id, account, amount, state, at_us)
                     VALUES (?1, ?2, '', 0, 'void', ?3)",
                    params![key, order_id, now_us()],
                )?;
                false
            }
        };
        tx.commit()?;
        Ok(charged)
    }

    fn record_entry(
        &self,
        key: &str,
        order_id: &str,
        account: &str,
        amount: i64,
    ) -> StoreResult<bool> {
        let n = lock(&self.ledger).execute(
            "INSERT OR IGNORE INTO entries (idem_key, order_id, account, amount, at_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, order_id, account, amount, now_us()],
        )?;
        Ok(n == 1)
    }

    fn unsettled_orders(&self) -> StoreResult<Vec<OrderRow>> {
        let conn = lock(&self.orders);
        let mut stmt = conn.prepare(
            "SELECT order_id, idem_key, account, amount, status FROM orders
             WHERE status IN ('pending', 'unknown') ORDER BY created_us",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OrderRow {
                    order_id: r.get(0)?,
                    idem_key: r.get(1)?,
                    account: r.get(2)?,
                    amount: r.get(3)?,
                    status: OrderStatus::parse(&r.get::<_, String>(4)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn audit(&self) -> StoreResult<Audit> {
        // A fresh connection with the three databases attached, so the checks are joins.
        let conn = open(&self.dir.join("deduct.db"))?;
        conn.execute(
            "ATTACH DATABASE ?1 AS l",
            params![self.dir.join("ledger.db").to_string_lossy()],
        )?;
        conn.execute(
            "ATTACH DATABASE ?1 AS o",
            params![self.dir.join("orders.db").to_string_lossy()],
        )?;
        let sum = |sql: &str| -> StoreResult<i64> {
            Ok(conn
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or(0))
        };
        let list = |sql: &str| -> StoreResult<Vec<String>> {
            let mut stmt = conn.prepare(sql)?;
            let v = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        };
        let mut audit = Audit {
            opening_total: sum("SELECT SUM(balance) FROM opening")?,
            balances_total: sum("SELECT SUM(balance) FROM accounts")?,
            charged_total: sum("SELECT SUM(amount) FROM charges WHERE state = 'charged'")?,
            charges: sum("SELECT COUNT(*) FROM charges WHERE state = 'charged'")? as u64,
            voided: sum("SELECT COUNT(*) FROM charges WHERE state = 'void'")? as u64,
            ledger_total: sum("SELECT SUM(amount) FROM l.entries")?,
            entries: sum("SELECT COUNT(*) FROM l.entries")? as u64,
            double_charged: list(
                "SELECT order_id FROM charges WHERE state = 'charged'
                 GROUP BY order_id HAVING COUNT(*) > 1",
            )?,
            charges_without_entry: list(
                "SELECT c.order_id FROM charges c LEFT JOIN l.entries e ON e.idem_key = c.idem_key
                 WHERE c.state = 'charged' AND e.idem_key IS NULL",
            )?,
            entries_without_charge: list(
                "SELECT e.order_id FROM l.entries e LEFT JOIN charges c
                   ON c.idem_key = e.idem_key AND c.state = 'charged' AND c.amount = e.amount
                 WHERE c.idem_key IS NULL",
            )?,
            degraded_charged: list(
                "SELECT o.order_id FROM o.orders o JOIN charges c ON c.order_id = o.order_id
                 WHERE o.status = 'degraded' AND c.state = 'charged'",
            )?,
            unsettled: list(
                "SELECT order_id FROM o.orders WHERE status IN ('pending', 'unknown')",
            )?,
            ..Audit::default()
        };
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM o.orders GROUP BY status")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (status, n) = row?;
            audit
                .orders_by_status
                .insert(OrderStatus::parse(&status), n as u64);
        }
        audit.charged_orders = list("SELECT order_id FROM charges WHERE state = 'charged'")?
            .into_iter()
            .collect();
        Ok(audit)
    }
}

/// The name of account `i`.
pub fn account_name(i: u32) -> String {
    format!("acct-{i:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(i: u32) -> OrderRow {
        OrderRow {
            order_id: format!("o-{i}"),
            idem_key: format!("k-{i}"),
            account: account_name(0),
            amount: 500,
            status: OrderStatus::Pending,
        }
    }

    #[test]
    fn charge_is_idempotent_and_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.open_accounts(2, 1000).unwrap();
        for i in 0..3 {
            s.create_order(&order(i)).unwrap();
        }
        let a = account_name(0);
        assert_eq!(
            s.charge("k-0", "o-0", &a, 500).unwrap(),
            ChargeOutcome::Charged
        );
        assert_eq!(
            s.charge("k-0", "o-0", &a, 500).unwrap(),
            ChargeOutcome::AlreadyCharged
        );
        assert!(!s.resolve_charge("k-1", "o-1").unwrap(), "voided");
        assert_eq!(
            s.charge("k-1", "o-1", &a, 500).unwrap(),
            ChargeOutcome::Voided
        );
        assert_eq!(
            s.charge("k-2", "o-2", &a, 900).unwrap(),
            ChargeOutcome::Insufficient
        );
        assert!(s.resolve_charge("k-0", "o-0").unwrap());
        let audit = s.audit().unwrap();
        assert!(
            !audit.conserved(),
            "ledger entry missing: ledger total differs"
        );
        assert_eq!(audit.charges_without_entry, vec!["o-0".to_string()]);
        assert!(s.record_entry("k-0", "o-0", &a, 500).unwrap());
        assert!(!s.record_entry("k-0", "o-0", &a, 500).unwrap(), "once");
        assert!(
            s.set_order_status("o-0", &[OrderStatus::Pending], OrderStatus::Completed)
                .unwrap()
        );
        for o in ["o-1", "o-2"] {
            s.set_order_status(o, &[OrderStatus::Pending], OrderStatus::Failed)
                .unwrap();
        }
        let audit = s.audit().unwrap();
        assert!(audit.ok(), "{audit:?}");
        assert_eq!(audit.voided, 1);
        assert_eq!(cents(12_345_678), "123 456.78");
    }
}
