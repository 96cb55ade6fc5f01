{
  "targets": [
    {
      "target_name": "fdhandoff",
      "sources": ["native/fdhandoff.c", "native/heap-pressure.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
