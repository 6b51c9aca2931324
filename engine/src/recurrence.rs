//! RFC 5545 recurrence evaluated in the store's IANA time zone.
