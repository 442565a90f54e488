//! Approval as evidence: what a supervisor approved, and whether an approval covers what is
//! about to be personalized.
//!
//! - The **reviewed data** is encoded canonically by [`review_message`]: order id, product, chip
//!   model, profile and AID, the clear tracks, the DGI list and the key check values (chip
//!   master keys and every key the preparation used). The message holds clear card data: it is
//!   only ever fed to a keyed MAC (the audit key, HMAC-SHA256) and then zeroized; the audit
//!   trail stores the digest only, which reveals nothing without the key.
//! - An **approval record** in the audit trail names the approver and the [`Evidence`]: the chip
//!   model and that digest.
//! - [`check`]: personalization re-prepares the order, recomputes the digest and accepts only
//!   the newest decision being an approval with the same model and digest, by another user than
//!   the one personalizing (dual control; production only: in test mode one person may play
//!   both roles at a demo desk). A forged status or `approved` flag, an approval of
//!   other data (another file with another PAN under the same `cardId`) or of another chip
//!   model, and a rejection or withdrawal since are refused.
//!
//! Pure: the digest's key and the trail are the adapters' business.

use std::fmt;

use zeroize::Zeroizing;

use super::prepare::PersoData;
use super::track::TrackNo;

/// What an approval covers: the chip model (`1`, `2`, `none`) and the keyed digest of the
/// reviewed data (64 upper-case hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `1`, `2` or `none` (stripe only).
    pub model: String,
    /// HMAC-SHA256 of [`review_message`] under the audit key, upper-case hex.
    pub digest: String,
}

impl Evidence {
    /// The evidence of `data` given its digest.
    pub fn of(data: &PersoData, digest: String) -> Evidence {
        Evidence {
            model: model_of(data),
            digest,
        }
    }

    /// Parses the note an approval record carries (`reviewed model=1 digest=...`).
    pub fn parse(note: &str) -> Option<Evidence> {
        let rest = note.strip_prefix("reviewed model=")?;
        let (model, digest) = rest.split_once(" digest=")?;
        let digest: String = digest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        (digest.len() == 64 && ["1", "2", "none"].contains(&model)).then(|| Evidence {
            model: model.to_string(),
            digest,
        })
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reviewed model={} digest={}", self.model, self.digest)
    }
}

/// The chip model of prepared data: `1`, `2`, or `none` without chip data.
pub fn model_of(data: &PersoData) -> String {
    data.chip
        .as_ref()
        .map_or_else(|| "none".to_string(), |c| c.model.number().to_string())
}

fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&u64::try_from(v.len()).unwrap_or(u64::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The canonical encoding of the reviewed data: `"persodesk review v1" 00`, then each field as
/// `00` (absent) or `01` + 8-byte big-endian length + bytes: order id, product, model, profile,
/// AID (hex), track 1, 2, 3 (clear), DGI ids (4 hex digits each), chip KCVs (AC, SMI, SMC hex),
/// then `usage #index=KCV` for every key used, in order. Zeroized on drop.
pub fn review_message(data: &PersoData) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(b"persodesk review v1\0".to_vec());
    field(&mut out, Some(data.order_id.as_bytes()));
    field(&mut out, Some(data.card_product_id.as_bytes()));
    field(&mut out, Some(model_of(data).as_bytes()));
    let chip = data.chip.as_ref();
    field(&mut out, chip.map(|c| c.profile.as_bytes()));
    field(
        &mut out,
        chip.map(|c| hex::encode_upper(&c.aid))
            .as_ref()
            .map(String::as_bytes),
    );
    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        field(&mut out, data.tracks.get(no).map(|t| t.reveal().as_bytes()));
    }
    let dgis = chip.map(|c| {
        c.ids()
            .iter()
            .map(|id| format!("{id:04X}"))
            .collect::<String>()
    });
    field(&mut out, dgis.as_deref().map(str::as_bytes));
    let kcvs = chip.and_then(|c| c.kcvs).map(|k| {
        format!(
            "{}{}{}",
            hex::encode_upper(k.ac),
            hex::encode_upper(k.smi),
            hex::encode_upper(k.smc)
        )
    });
    field(&mut out, kcvs.as_deref().map(str::as_bytes));
    for k in &data.keys_used {
        field(&mut out, Some(format!("{}={}", k.key, k.kcv).as_bytes()));
    }
    out
}

/// The newest review decision on an order, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved by `by`, with the evidence the record carries (`None`: a record without it).
    Approved {
        /// The supervisor.
        by: String,
        /// What was reviewed.
        evidence: Option<Evidence>,
    },
    /// Rejected by `by`.
    Rejected {
        /// The supervisor.
        by: String,
    },
    /// The approval was withdrawn, or the data prepared again, since: nothing is approved.
    Undecided,
}

/// The decision an audit record states (`action`, `user`, `outcome`), if it is one.
pub fn decision_of(action: &str, user: &str, outcome: &str) -> Option<Decision> {
    match action {
        "approved" => Some(Decision::Approved {
            by: user.to_string(),
            evidence: outcome
                .split_once("; ")
                .and_then(|(_, n)| Evidence::parse(n)),
        }),
        "rejected" => Some(Decision::Rejected {
            by: user.to_string(),
        }),
        "approval-withdrawn" | "prepared" | "prepare-failed" => Some(Decision::Undecided),
        _ => None,
    }
}

/// Does the newest `decision` approve personalizing data with evidence `now` by `personalizer`
/// (another user than the approver when `dual_control`)? The error is the rule that refuses it.
pub fn check(
    decision: Option<&Decision>,
    now: &Evidence,
    personalizer: &str,
    dual_control: bool,
) -> Result<(), &'static str> {
    match decision {
        None | Some(Decision::Undecided) => {
            Err("no supervisor approval of this data is in the audit trail")
        }
        Some(Decision::Rejected { .. }) => Err("the order's data was rejected"),
        Some(Decision::Approved { evidence: None, .. }) => {
            Err("the approval record carries no evidence of the reviewed data")
        }
        Some(Decision::Approved {
            by,
            evidence: Some(e),
        }) => {
            if e.model != now.model {
                Err("the approval was for another chip model: the order needs a new review")
            } else if !bool::from(subtle::ConstantTimeEq::ct_eq(
                e.digest.as_bytes(),
                now.digest.as_bytes(),
            )) {
                Err("the data differs from what the supervisor reviewed")
            } else if dual_control && by == personalizer {
                Err("the approver may not personalize the same order (dual control)")
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(model: &str, d: char) -> Evidence {
        Evidence {
            model: model.into(),
            digest: std::iter::repeat_n(d, 64).collect(),
        }
    }

    #[test]
    fn evidence_round_trips_through_its_note() {
        let e = ev("1", 'A');
        assert_eq!(Evidence::parse(&e.to_string()), Some(e.clone()));
        assert_eq!(Evidence::parse("reviewed model=3 digest=AA"), None);
        let d = decision_of("approved", "carol", &format!("CARD_PROD_READY; {e}"));
        assert_eq!(
            d,
            Some(Decision::Approved {
                by: "carol".into(),
                evidence: Some(e)
            })
        );
        assert_eq!(
            decision_of("approved", "carol", "CARD_PROD_READY"),
            Some(Decision::Approved {
                by: "carol".into(),
                evidence: None
            })
        );
        assert_eq!(decision_of("sign-in", "carol", "ok"), None);
    }

    /// Issue 13 finding 1: only a matching approval by someone else counts.
    #[test]
    fn only_a_matching_approval_by_another_user_counts() {
        let approved = |by: &str, e: Evidence| Decision::Approved {
            by: by.into(),
            evidence: Some(e),
        };
        let now = ev("1", 'A');
        assert!(check(Some(&approved("carol", now.clone())), &now, "alice", true).is_ok());
        // Test mode: one person at a demo desk.
        assert!(check(Some(&approved("alice", now.clone())), &now, "alice", false).is_ok());
        for (d, rule) in [
            (None, "no supervisor approval"),
            (Some(Decision::Undecided), "no supervisor approval"),
            (Some(Decision::Rejected { by: "carol".into() }), "rejected"),
            (
                Some(Decision::Approved {
                    by: "carol".into(),
                    evidence: None,
                }),
                "no evidence",
            ),
            (Some(approved("carol", ev("1", 'B'))), "data differs"),
            (Some(approved("carol", ev("2", 'A'))), "another chip model"),
            (Some(approved("alice", now.clone())), "dual control"),
        ] {
            let e = check(d.as_ref(), &now, "alice", true).expect_err(rule);
            assert!(e.contains(rule), "{e}");
        }
    }
}
