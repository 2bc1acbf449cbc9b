/*
 * usbprobe: runs inside the capture guest (see ../capture-qemu-hid.sh).
 * For every USB device node given on the command line it issues a fixed
 * list of control requests through usbfs and prints one line per request:
 *
 *   R <label> <bmRequestType> <bRequest> <wValue> <wIndex> <wLength> OK <hex>
 *   R <label> ... ERR <errno-name>
 *
 * The requests cover the standard, HID class and MS OS descriptor requests
 * whose answers our emulated devices must reproduce. It must run before the
 * HID driver binds (interface-recipient requests need the interface free).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/usbdevice_fs.h>

static unsigned char buf[4096];

static void ctl(int fd, const char *label, int rt, int rq, int val, int idx,
                int len, const unsigned char *out) {
  struct usbdevfs_ctrltransfer c;
  memset(&c, 0, sizeof c);
  memset(buf, 0, sizeof buf);
  if (out) memcpy(buf, out, len);
  c.bRequestType = rt;
  c.bRequest = rq;
  c.wValue = val;
  c.wIndex = idx;
  c.wLength = len;
  c.timeout = 1000;
  c.data = buf;
  int r = ioctl(fd, USBDEVFS_CONTROL, &c);
  printf("R %s %02x %02x %04x %04x %u ", label, rt, rq, val, idx, len);
  if (r < 0) {
    printf("ERR %s\n", errno == EPIPE ? "EPIPE" : errno == ETIMEDOUT ? "ETIMEDOUT" : strerror(errno));
    return;
  }
  printf("OK ");
  if (rt & 0x80)
    for (int i = 0; i < r; i++) printf("%02x", buf[i]);
  printf("\n");
}

static void intr(int fd, const char *label, int ep, int len, int timeout) {
  struct usbdevfs_bulktransfer b;
  memset(&b, 0, sizeof b);
  memset(buf, 0, sizeof buf);
  b.ep = ep;
  b.len = len;
  b.timeout = timeout;
  b.data = buf;
  int r = ioctl(fd, USBDEVFS_BULK, &b);
  printf("I %s %02x %u ", label, ep, len);
  if (r < 0) {
    printf("ERR %s\n", errno == EPIPE ? "EPIPE" : errno == ETIMEDOUT ? "ETIMEDOUT" : strerror(errno));
    return;
  }
  printf("OK ");
  for (int i = 0; i < r; i++) printf("%02x", buf[i]);
  printf("\n");
}

/*
 * --reports DEV MPS NAME...: for each scenario NAME print "WAIT NAME", give
 * the host 2 s to inject input (the device is not polled meanwhile), then
 * read interrupt reports of MPS bytes until one read times out, printing
 * "REP NAME <hex>" per report and "DONE NAME".
 */
static int reports(int argc, char **argv) {
  int fd = open(argv[2], O_RDWR);
  int mps = atoi(argv[3]);
  if (fd < 0) { printf("open %s failed\n", argv[2]); return 1; }
  /* SET_IDLE(0): no idle reports; also makes QEMU route pointer input here. */
  ctl(fd, "set_idle0", 0x21, 10, 0, 0, 0, 0);
  for (int a = 4; a < argc; a++) {
    printf("WAIT %s\n", argv[a]);
    fflush(stdout);
    sleep(2);
    for (;;) {
      struct usbdevfs_bulktransfer b;
      memset(&b, 0, sizeof b);
      memset(buf, 0, sizeof buf);
      b.ep = 0x81;
      b.len = mps;
      b.timeout = 300;
      b.data = buf;
      int r = ioctl(fd, USBDEVFS_BULK, &b);
      if (r < 0) break;
      printf("REP %s ", argv[a]);
      for (int i = 0; i < r; i++) printf("%02x", buf[i]);
      printf("\n");
    }
    printf("DONE %s\n", argv[a]);
    fflush(stdout);
  }
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 3 && strcmp(argv[1], "--reports") == 0) return reports(argc, argv);
  for (int a = 1; a < argc; a++) {
    int fd = open(argv[a], O_RDWR);
    if (fd < 0) { printf("open %s failed\n", argv[a]); continue; }
    printf("BEGIN %s\n", argv[a]);
    char l[32];
    /* descriptors */
    ctl(fd, "dev18", 0x80, 6, 0x0100, 0, 18, 0);
    ctl(fd, "dev8", 0x80, 6, 0x0100, 0, 8, 0);
    ctl(fd, "dev64", 0x80, 6, 0x0100, 0, 64, 0);
    ctl(fd, "dev4096", 0x80, 6, 0x0100, 0, 4096, 0);
    ctl(fd, "cfg9", 0x80, 6, 0x0200, 0, 9, 0);
    ctl(fd, "cfg255", 0x80, 6, 0x0200, 0, 255, 0);
    ctl(fd, "cfgidx1", 0x80, 6, 0x0201, 0, 255, 0);
    ctl(fd, "str0", 0x80, 6, 0x0300, 0, 255, 0);
    for (int i = 1; i <= 12; i++) {
      snprintf(l, sizeof l, "str%d", i);
      ctl(fd, l, 0x80, 6, 0x0300 | i, 0x0409, 255, 0);
    }
    ctl(fd, "str2len2", 0x80, 6, 0x0302, 0x0409, 2, 0);
    ctl(fd, "str2len5", 0x80, 6, 0x0302, 0x0409, 5, 0);
    ctl(fd, "str2lang0", 0x80, 6, 0x0302, 0, 255, 0);
    ctl(fd, "strEE", 0x80, 6, 0x03ee, 0, 255, 0);
    ctl(fd, "qualifier", 0x80, 6, 0x0600, 0, 255, 0);
    ctl(fd, "otherspeed", 0x80, 6, 0x0700, 0, 255, 0);
    ctl(fd, "bos", 0x80, 6, 0x0f00, 0, 255, 0);
    ctl(fd, "debug", 0x80, 6, 0x0a00, 0, 255, 0);
    ctl(fd, "type9", 0x80, 6, 0x0900, 0, 255, 0);
    ctl(fd, "devreport", 0x80, 6, 0x2200, 0, 255, 0);
    ctl(fd, "ifreport", 0x81, 6, 0x2200, 0, 255, 0);
    ctl(fd, "ifreport8", 0x81, 6, 0x2200, 0, 8, 0);
    ctl(fd, "ifhid", 0x81, 6, 0x2100, 0, 255, 0);
    /* standard requests */
    ctl(fd, "status_dev", 0x80, 0, 0, 0, 2, 0);
    ctl(fd, "status_if", 0x81, 0, 0, 0, 2, 0);
    ctl(fd, "status_ep81", 0x82, 0, 0, 0x81, 2, 0);
    ctl(fd, "status_ep0", 0x82, 0, 0, 0, 2, 0);
    ctl(fd, "getconfig", 0x80, 8, 0, 0, 1, 0);
    ctl(fd, "getif0", 0x81, 10, 0, 0, 1, 0);
    ctl(fd, "synchframe", 0x82, 12, 0, 0x81, 2, 0);
    ctl(fd, "set_rwu", 0x00, 3, 1, 0, 0, 0);
    ctl(fd, "status_dev_rwu", 0x80, 0, 0, 0, 2, 0);
    ctl(fd, "clear_rwu", 0x00, 1, 1, 0, 0, 0);
    ctl(fd, "status_dev_norwu", 0x80, 0, 0, 0, 2, 0);
    ctl(fd, "set_testmode", 0x00, 3, 2, 0x0100, 0, 0);
    ctl(fd, "set_halt", 0x02, 3, 0, 0x81, 0, 0);
    ctl(fd, "clear_halt", 0x02, 1, 0, 0x81, 0, 0);
    ctl(fd, "setif0", 0x01, 11, 0, 0, 0, 0);
    ctl(fd, "setif_alt1", 0x01, 11, 1, 0, 0, 0);
    ctl(fd, "getif0_after", 0x81, 10, 0, 0, 1, 0);
    /* MS OS descriptors */
    ctl(fd, "msos_dev4", 0xc0, 0x51, 0, 4, 255, 0);
    ctl(fd, "msos_dev5", 0xc0, 0x51, 0, 5, 255, 0);
    ctl(fd, "msos_if4", 0xc1, 0x51, 0, 4, 255, 0);
    ctl(fd, "msos_if5", 0xc1, 0x51, 0, 5, 255, 0);
    ctl(fd, "msos_dev6", 0xc0, 0x51, 0, 6, 255, 0);
    ctl(fd, "msos_dev5len16", 0xc0, 0x51, 0, 5, 16, 0);
    /* HID class requests */
    ctl(fd, "get_idle", 0xa1, 2, 0, 0, 1, 0);
    ctl(fd, "set_idle5", 0x21, 10, 0x0500, 0, 0, 0);
    ctl(fd, "get_idle5", 0xa1, 2, 0, 0, 1, 0);
    ctl(fd, "get_protocol", 0xa1, 3, 0, 0, 1, 0);
    ctl(fd, "set_protocol0", 0x21, 11, 0, 0, 0, 0);
    ctl(fd, "get_protocol0", 0xa1, 3, 0, 0, 1, 0);
    ctl(fd, "set_protocol1", 0x21, 11, 1, 0, 0, 0);
    ctl(fd, "get_report", 0xa1, 1, 0x0100, 0, 8, 0);
    ctl(fd, "get_report1", 0xa1, 1, 0x0100, 0, 1, 0);
    {
      unsigned char led = 0x03;
      ctl(fd, "set_report", 0x21, 9, 0x0200, 0, 1, &led);
    }
    ctl(fd, "class_bad", 0xa1, 5, 0, 0, 1, 0);
    ctl(fd, "vendor_bad", 0xc0, 0x01, 0, 0, 1, 0);
    /* interrupt endpoint: idle 0 -> nothing (NAK until timeout) */
    ctl(fd, "set_idle0", 0x21, 10, 0, 0, 0, 0);
    intr(fd, "intr_noidle", 0x81, 8, 200);
    ctl(fd, "set_idle1", 0x21, 10, 0x0100, 0, 0, 0);
    intr(fd, "intr_idle", 0x81, 8, 1000);
    ctl(fd, "set_idle0b", 0x21, 10, 0, 0, 0, 0);
    printf("END %s\n", argv[a]);
    close(fd);
  }
  return 0;
}
