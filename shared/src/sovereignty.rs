//! Data sovereignty: what a key requires of the providers that serve it, and what a provider
//! (a catalog model, or a user's own provider) declares it offers. A request is routed only to
//! models whose provider meets every requirement of its key; when none does, it is refused
//! with 403 `sovereignty_unmet`, naming what was unmet.
//!
//! Requirements (a key's `sovereignty_requirements`), every field optional:
//! `{"regions": ["eu-west-1", "eu-central-1"], "zero_data_retention": true, "no_training": true,
//!   "certifications": ["iso27001", "soc2"]}` - the provider's region must be one of `regions`;
//! it must declare zero data retention / no training on the data when those are `true`; and it
//! must hold every listed certification.
//!
//! An offer (a model's or provider's `sovereignty`): `{"region": "eu-west-1",
//! "zero_data_retention": true, "no_training": true, "certifications": ["iso27001"]}`. What it
//! does not declare, it does not offer. Unknown fields are refused in both, so a misspelled
//! requirement is never silently ignored.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    pub regions: Option<Vec<String>>,
    pub zero_data_retention: Option<bool>,
    pub no_training: Option<bool>,
    pub certifications: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub region: Option<String>,
    pub zero_data_retention: Option<bool>,
    pub no_training: Option<bool>,
    pub certifications: Option<Vec<String>>,
}

fn parse<T: for<'de> Deserialize<'de>>(json: &str, param: &str, shape: &str) -> ApiResult<T> {
    serde_json::from_str(json).map_err(|e| ApiError::invalid_param(param, format!("{param} must be {shape} ({e}); see the README's data sovereignty section")))
}

/// A key's requirements, from their JSON text.
pub fn requirements(json: &str, param: &str) -> ApiResult<Requirements> {
    parse(json, param, "an object with regions, zero_data_retention, no_training and certifications, each optional")
}

/// A provider's offer, from its JSON text.
pub fn offer(json: &str, param: &str) -> ApiResult<Offer> {
    parse(json, param, "an object with region, zero_data_retention, no_training and certifications, each optional")
}

/// What of `required` the `offered` (none: nothing declared) does not meet, in words.
pub fn unmet(required: &Requirements, offered: Option<&Offer>) -> Vec<String> {
    let offered = offered.cloned().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(regions) = &required.regions {
        match &offered.region {
            Some(region) if regions.contains(region) => {}
            Some(region) => out.push(format!("region {region} is not one of {}", regions.join(", "))),
            None => out.push(format!("no region declared (one of {} is required)", regions.join(", "))),
        }
    }
    if required.zero_data_retention == Some(true) && offered.zero_data_retention != Some(true) {
        out.push("zero data retention is not declared".into());
    }
    if required.no_training == Some(true) && offered.no_training != Some(true) {
        out.push("no training on the data is not declared".into());
    }
    for cert in required.certifications.iter().flatten() {
        if !offered.certifications.iter().flatten().any(|c| c == cert) {
            out.push(format!("certification {cert} is not declared"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_requirement_is_checked_and_named() {
        let required = requirements(r#"{"regions": ["eu-west-1"], "zero_data_retention": true, "certifications": ["iso27001"]}"#, "r").unwrap();
        let good = offer(r#"{"region": "eu-west-1", "zero_data_retention": true, "certifications": ["iso27001", "soc2"]}"#, "o").unwrap();
        assert!(unmet(&required, Some(&good)).is_empty());
        let us = offer(r#"{"region": "us-east-1", "certifications": []}"#, "o").unwrap();
        assert_eq!(unmet(&required, Some(&us)).len(), 3);
        assert_eq!(unmet(&required, None).len(), 3, "nothing declared, nothing offered");
        assert!(unmet(&Requirements::default(), None).is_empty());
        assert!(requirements(r#"{"region": "eu"}"#, "r").is_err(), "a misspelled requirement is refused");
        assert!(requirements(r#"{"regions": "eu"}"#, "r").is_err());
    }
}
