// Package iscsi is an iSCSI target (RFC 7143) over SCSI logical units
// (package scsi): the PDU codec, login with CHAP (RFC 1994, one-way and
// mutual) and operational negotiation, discovery sessions, and the full
// feature phase (SCSI commands with Data-In, Data-Out, immediate and
// unsolicited data and R2T; NOP, task management, text, logout).
//
// It runs at error recovery level 0 with one connection per session
// (MaxConnections=1); an initiator may open many sessions at once. Every
// size, count and wait an initiator controls is bounded, so that a hostile
// initiator costs at most its own connection. Command data is bounded per
// connection and for the whole server (budget.go): a connection holds at
// most its share of the server's, and others wait for what it holds.
package iscsi
