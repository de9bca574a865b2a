//! End-to-end tests of the Witness appliance with real peers: OpenSSH `sshd` as the target, the
//! real `witness` binary as the box, and the real `ssh`/`scp`/`sftp` clients as users.

mod archive;
mod attacks_console;
mod attacks_doors;
mod attacks_red15;
mod attacks_red17e;
mod attacks_red18;
mod attacks_red18c;
mod attacks_red18d;
mod attacks_red18e;
mod attacks_red18j;
mod attacks_red18k;
mod attacks_red19;
mod attacks_red20;
mod attacks_red22;
mod attacks_red22b;
mod attacks_ssh;
mod board;
mod console_pages;
mod evidence;
mod flash;
mod gigabyte;
mod harness;
mod image;
mod rdp;
mod rdp_policy;
mod rdp_search;
mod rdp_video;
mod retention;
mod shutdown;
mod ssh_path;
mod store;
mod video;
mod web;
