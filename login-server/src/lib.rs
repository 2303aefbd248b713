//! Peerphone login server: accounts, credentials, buddy lists, mailbox, directory.
