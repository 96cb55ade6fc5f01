/*
 * The part of the addon that needs V8's own API (not Node-API): asking every
 * thread's V8 heap for a memory-reducing collection, from the primary thread.
 *
 * Each thread that loads the addon (the primary and every worker) registers
 * its isolate when the addon's init runs for it, and removes it in an
 * environment cleanup hook, which runs before a worker's isolate is disposed.
 * reduce_heaps() sends each registered isolate
 * MemoryPressureNotification(kModerate), which V8 allows from any thread: on
 * another thread it posts a task to that isolate's loop (and requests an
 * interrupt), which starts incremental marking with kReduceMemoryFootprint if
 * none is running, and then V8 resets the level to kNone. After such a
 * collection V8 sets the next old-generation limit the way its memory reducer
 * does when a thread goes idle (growing factor 1.1, at least 2 MB), instead of
 * at least 8 MB above what survived: the old generation's sawtooth stays low
 * under sustained load too (#18). The marking is incremental and concurrent, as
 * for any collection V8 starts by itself.
 */
#include <v8.h>
#include <algorithm>
#include <mutex>
#include <vector>

namespace {
std::mutex isolates_mutex;
std::vector<v8::Isolate*> isolates;
}  // namespace

extern "C" void* swy_heap_register(void) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(isolates_mutex);
  isolates.push_back(isolate);
  return isolate;
}

extern "C" void swy_heap_unregister(void* isolate) {
  std::lock_guard<std::mutex> lock(isolates_mutex);
  auto it = std::find(isolates.begin(), isolates.end(), static_cast<v8::Isolate*>(isolate));
  if (it != isolates.end()) isolates.erase(it);
}

/* -> how many isolates were asked */
extern "C" int swy_heap_reduce_all(void) {
  std::lock_guard<std::mutex> lock(isolates_mutex);
  for (v8::Isolate* isolate : isolates) isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
  return static_cast<int>(isolates.size());
}
