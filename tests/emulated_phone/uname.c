/* uname for the emulated arm64 phone (tests/emulated_phone/phone.py): built for aarch64, it runs
 * under qemu-user, which reports the machine as aarch64, as a phone's toybox uname does. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
int main(int argc, char** argv) {
  struct utsname u;
  if (uname(&u) != 0) return 1;
  if (argc < 2) { puts(u.sysname); return 0; }
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!strcmp(a, "-m")) puts(u.machine);
    else if (!strcmp(a, "-r")) puts(u.release);
    else if (!strcmp(a, "-s")) puts(u.sysname);
    else if (!strcmp(a, "-n")) puts(u.nodename);
    else if (!strcmp(a, "-a")) printf("%s %s %s %s %s\n", u.sysname, u.nodename, u.release, u.version, u.machine);
    else { fprintf(stderr, "uname: unknown option %s\n", a); return 1; }
  }
  return 0;
}
