//! The bank's ledger in SQLite: users, accounts, booked transactions and transfers.
//!
//! Money only moves inside one `BEGIN IMMEDIATE` transaction (the write lock is taken before the
//! first read, so two transfers never interleave), and the debit is a conditional
//! `UPDATE .. WHERE balance >= amount`: the database itself refuses an overdraft, whatever the
//! number of connections or processes. Idempotency keys are unique per (subject, client, key) in
//! the schema, and are looked up inside the same transaction as the debit.

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

/// The demo users, as in `fapi-as seed`: (user id, username, display name). Account ids are
/// `<username>-1` (普通預金, ordinary) and `<username>-2` (貯蓄預金, savings).
pub const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("user-taro", "taro", "山田 太郎"),
    ("user-hanako", "hanako", "Hanako Suzuki"),
];

/// The demo accounts of every user: (suffix, account type, name, balance in JPY), as in `fapi-as seed`.
const DEMO_ACCOUNTS: &[(&str, &str, &str, i64)] = &[
    ("1", "ordinary", "普通預金 Ordinary", 1_250_000),
    ("2", "savings", "貯蓄預金 Savings", 3_000_000),
];

/// One seeded booking: (booked at, unix seconds; description; signed amount in JPY).
type Booking = (i64, &'static str, i64);

/// Seeded history per account type. The amounts add up to the account's seeded balance, so
/// `balance_after` of the newest booking is the balance.
const DEMO_HISTORY: &[(&str, &[Booking])] = &[
    (
        "ordinary",
        &[
            (1_772_326_800, "繰越 Balance brought forward", 1_000_000), // 2026-03-01 10:00 JST
            (1_774_573_200, "給与 Salary ACME株式会社", 350_000),       // 2026-03-27 10:00 JST
            (1_774_947_600, "電気料金 Electricity 東京電力", -12_400),  // 2026-03-31 18:00 JST
            (1_775_203_200, "ATM 引出 Cash withdrawal", -30_000),       // 2026-04-03 17:00 JST
            (1_775_385_000, "カード利用 Card payment", -57_600),        // 2026-04-05 19:30 JST
        ],
    ),
    (
        "savings",
        &[
            (1_772_326_800, "繰越 Balance brought forward", 2_949_880), // 2026-03-01 10:00 JST
            (1_774_573_200, "定期積立 Monthly saving", 50_000),         // 2026-03-27 10:00 JST
            (1_774_915_200, "利息 Interest", 120),                      // 2026-03-31 09:00 JST
        ],
    ),
];

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id), account_type TEXT NOT NULL, name TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL CHECK (balance >= 0))",
    "CREATE INDEX IF NOT EXISTS accounts_user ON accounts (user_id)",
    "CREATE TABLE IF NOT EXISTS transfers (transfer_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, client_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, request TEXT NOT NULL, from_account TEXT NOT NULL, to_account TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount > 0), currency TEXT NOT NULL, reference TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL, interaction_id TEXT NOT NULL, acr TEXT, binding TEXT, UNIQUE (user_id, client_id, idempotency_key))",
    "CREATE TABLE IF NOT EXISTS transactions (seq INTEGER PRIMARY KEY AUTOINCREMENT, transaction_id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL REFERENCES accounts(account_id), booked_at INTEGER NOT NULL, amount INTEGER NOT NULL, balance_after INTEGER NOT NULL, description TEXT NOT NULL, counterparty_account TEXT, transfer_id TEXT REFERENCES transfers(transfer_id))",
    "CREATE INDEX IF NOT EXISTS transactions_account ON transactions (account_id, booked_at, seq)",
];

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub user_id: String,
    /// `ordinary` (普通預金) or `savings` (貯蓄預金).
    pub account_type: String,
    pub name: String,
    pub currency: String,
    pub balance: i64,
}

/// A booked transaction (入出金明細) as stored; `amount` is signed (negative = debit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub transaction_id: String,
    pub account_id: String,
    pub booked_at: i64,
    pub amount: i64,
    pub balance_after: i64,
    pub description: String,
    pub counterparty_account: Option<String>,
    pub transfer_id: Option<String>,
}

/// A transfer instruction (振込依頼) in its canonical form: what "the same body" means for the
/// Idempotency-Key comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferRequest {
    pub from_account: String,
    pub to_account: String,
    pub amount: i64,
    pub reference: String,
}

/// Who asked, from the claim headers the plugin forwards; recorded with the transfer.
#[derive(Debug, Clone, Default)]
pub struct Initiator {
    pub user_id: String,
    /// Empty when the plugin forwarded no client id.
    pub client_id: String,
    pub acr: Option<String>,
    pub binding: Option<String>,
    pub interaction_id: String,
}

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub transfer_id: String,
    pub user_id: String,
    pub client_id: String,
    pub from_account: String,
    pub to_account: String,
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    /// Always `completed`: book transfers between accounts of this bank settle at once.
    pub status: String,
    pub created_at: i64,
}

/// The result of [`Store::transfer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Money moved now.
    Created(Transfer),
    /// The Idempotency-Key was used before with the same request: the original transfer, nothing moved.
    Replayed(Transfer),
}

/// Why a transfer was refused; nothing moved.
#[derive(Debug)]
pub enum TransferError {
    /// The Idempotency-Key was used before with a different request.
    KeyReused,
    /// `from_account` does not exist or is not the subject's.
    FromNotFound,
    /// `to_account` does not exist.
    ToNotFound,
    SameAccount,
    CurrencyMismatch,
    /// The balance of `from_account` is smaller than the amount.
    InsufficientFunds {
        available: i64,
    },
    Db(sqlx::Error),
}

impl From<sqlx::Error> for TransferError {
    fn from(e: sqlx::Error) -> Self {
        TransferError::Db(e)
    }
}

/// What [`Store::seed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub accounts_created: usize,
    pub transactions_created: usize,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn account(row: &SqliteRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        account_id: row.try_get("account_id")?,
        user_id: row.try_get("user_id")?,
        account_type: row.try_get("account_type")?,
        name: row.try_get("name")?,
        currency: row.try_get("currency")?,
        balance: row.try_get("balance")?,
    })
}

fn transaction(row: &SqliteRow) -> Result<Transaction, sqlx::Error> {
    Ok(Transaction {
        transaction_id: row.try_get("transaction_id")?,
        account_id: row.try_get("account_id")?,
        booked_at: row.try_get("booked_at")?,
        amount: row.try_get("amount")?,
        balance_after: row.try_get("balance_after")?,
        description: row.try_get("description")?,
        counterparty_account: row.try_get("counterparty_account")?,
        transfer_id: row.try_get("transfer_id")?,
    })
}

fn transfer(row: &SqliteRow) -> Result<Transfer, sqlx::Error> {
    Ok(Transfer {
        transfer_id: row.try_get("transfer_id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        from_account: row.try_get("from_account")?,
        to_account: row.try_get("to_account")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        reference: row.try_get("reference")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "account_id, user_id, account_type, name, currency, balance";
const TRANSFER_COLUMNS: &str = "transfer_id, user_id, client_id, from_account, to_account, amount, currency, reference, status, created_at";

impl Store {
    /// Opens (creating when missing) the SQLite file at `path` and creates the schema.
    pub async fn open(path: &Path) -> Result<Store, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Store { pool })
    }

    /// The database answers (for /health).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    /// Creates the demo users, their accounts and each account's history, where missing. With
    /// `reset`, first deletes everything (transfers included): balances are back to the seed.
    pub async fn seed(&self, reset: bool) -> Result<SeedReport, sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if reset {
            for table in ["transactions", "transfers", "accounts", "users"] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut report = SeedReport::default();
        for (user_id, username, display_name) in DEMO_USERS {
            sqlx::query("INSERT OR IGNORE INTO users (user_id, username, display_name) VALUES (?, ?, ?)")
                .bind(user_id)
                .bind(username)
                .bind(display_name)
                .execute(&mut *tx)
                .await?;
            for (suffix, account_type, name, balance) in DEMO_ACCOUNTS {
                let account_id = format!("{username}-{suffix}");
                let created = sqlx::query(
                    "INSERT OR IGNORE INTO accounts (account_id, user_id, account_type, name, currency, balance) VALUES (?, ?, ?, ?, 'JPY', ?)",
                )
                .bind(&account_id)
                .bind(user_id)
                .bind(account_type)
                .bind(name)
                .bind(balance)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if created == 0 {
                    continue;
                }
                report.accounts_created += 1;
                let history = DEMO_HISTORY
                    .iter()
                    .find(|(t, _)| t == account_type)
                    .map(|(_, h)| *h)
                    .unwrap_or_default();
                let mut running = 0i64;
                for (booked_at, description, amount) in history {
                    running += amount;
                    sqlx::query(
                        "INSERT INTO transactions (transaction_id, account_id, booked_at, amount, balance_after, description) VALUES ('TX-' || upper(hex(randomblob(8))), ?, ?, ?, ?, ?)",
                    )
                    .bind(&account_id)
                    .bind(booked_at)
                    .bind(amount)
                    .bind(running)
                    .bind(description)
                    .execute(&mut *tx)
                    .await?;
                    report.transactions_created += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// The accounts of `user_id`, by account id.
    pub async fn accounts_of(&self, user_id: &str) -> Result<Vec<Account>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = ? ORDER BY account_id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(account)
        .collect()
    }

    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?"
        ))
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(account)
        .transpose()
    }

    /// The newest `limit` transactions of an account, newest first.
    pub async fn transactions(&self, account_id: &str, limit: u32) -> Result<Vec<Transaction>, sqlx::Error> {
        sqlx::query(
            "SELECT transaction_id, account_id, booked_at, amount, balance_after, description, counterparty_account, transfer_id \
             FROM transactions WHERE account_id = ? ORDER BY booked_at DESC, seq DESC LIMIT ?",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(transaction)
        .collect()
    }

    pub async fn transfer_by_id(&self, transfer_id: &str) -> Result<Option<Transfer>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE transfer_id = ?"
        ))
        .bind(transfer_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(transfer)
        .transpose()
    }

    /// Moves `request.amount` from `request.from_account` (which must be `who.user_id`'s) to
    /// `request.to_account`, exactly once per (subject, client, `idempotency_key`): all or nothing.
    pub async fn transfer(
        &self,
        who: &Initiator,
        idempotency_key: &str,
        request: &TransferRequest,
        now: i64,
    ) -> Result<TransferOutcome, TransferError> {
        let canonical = serde_json::to_string(request).unwrap_or_default();
        // Dropping `tx` without commit rolls back: every early return below leaves the ledger as it was.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let earlier = sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS}, request FROM transfers WHERE user_id = ? AND client_id = ? AND idempotency_key = ?"
        ))
        .bind(&who.user_id)
        .bind(&who.client_id)
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = earlier {
            let stored: String = row.try_get("request")?;
            return if stored == canonical {
                Ok(TransferOutcome::Replayed(transfer(&row)?))
            } else {
                Err(TransferError::KeyReused)
            };
        }
        let select = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?");
        let from = sqlx::query(&select)
            .bind(&request.from_account)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(account)
            .transpose()?
            .filter(|a| a.user_id == who.user_id)
            .ok_or(TransferError::FromNotFound)?;
        let to = sqlx::query(&select)
            .bind(&request.to_account)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(account)
            .transpose()?
            .ok_or(TransferError::ToNotFound)?;
        if from.account_id == to.account_id {
            return Err(TransferError::SameAccount);
        }
        if from.currency != to.currency {
            return Err(TransferError::CurrencyMismatch);
        }
        // The overdraft check and the debit are one statement.
        let debited =
            sqlx::query("UPDATE accounts SET balance = balance - ? WHERE account_id = ? AND balance >= ?")
                .bind(request.amount)
                .bind(&from.account_id)
                .bind(request.amount)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if debited != 1 {
            return Err(TransferError::InsufficientFunds {
                available: from.balance,
            });
        }
        sqlx::query("UPDATE accounts SET balance = balance + ? WHERE account_id = ?")
            .bind(request.amount)
            .bind(&to.account_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO transfers (transfer_id, user_id, client_id, idempotency_key, request, from_account, to_account, amount, currency, reference, status, created_at, interaction_id, acr, binding) \
             VALUES ('TR-' || upper(hex(randomblob(8))), ?, ?, ?, ?, ?, ?, ?, ?, ?, 'completed', ?, ?, ?, ?) RETURNING {TRANSFER_COLUMNS}"
        ))
        .bind(&who.user_id)
        .bind(&who.client_id)
        .bind(idempotency_key)
        .bind(&canonical)
        .bind(&from.account_id)
        .bind(&to.account_id)
        .bind(request.amount)
        .bind(&from.currency)
        .bind(&request.reference)
        .bind(now)
        .bind(&who.interaction_id)
        .bind(&who.acr)
        .bind(&who.binding)
        .fetch_one(&mut *tx)
        .await?;
        let created = transfer(&row)?;
        let description = if request.reference.is_empty() {
            "振込 Transfer".to_string()
        } else {
            format!("振込 Transfer {}", request.reference)
        };
        for (account_id, counterparty, amount) in [
            (&from.account_id, &to.account_id, -request.amount),
            (&to.account_id, &from.account_id, request.amount),
        ] {
            sqlx::query(
                "INSERT INTO transactions (transaction_id, account_id, booked_at, amount, balance_after, description, counterparty_account, transfer_id) \
                 VALUES ('TX-' || upper(hex(randomblob(8))), ?, ?, ?, (SELECT balance FROM accounts WHERE account_id = ?), ?, ?, ?)",
            )
            .bind(account_id)
            .bind(now)
            .bind(amount)
            .bind(account_id)
            .bind(&description)
            .bind(counterparty)
            .bind(&created.transfer_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(TransferOutcome::Created(created))
    }
}
