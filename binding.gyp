{
  "targets": [
    {
      "target_name": "fdhandoff",
      "sources": ["native/fdhandoff.c", "native/heap-pressure.cc", "native/access-line.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-lm"]
    }
  ]
}
