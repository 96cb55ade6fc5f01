{
  "targets": [
    {
      "target_name": "fdhandoff",
      "sources": ["native/fdhandoff.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
