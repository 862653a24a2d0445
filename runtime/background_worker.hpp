#pragma once
// One thread that runs queued jobs in order, with a bound on the jobs waiting: a front end hands
// it slow work (statistics, metrics text) so its I/O thread never waits for an actor.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace osd {

class BackgroundWorker {
 public:
  explicit BackgroundWorker(size_t max_waiting) : max_waiting_(max_waiting), thread_([this] { run(); }) {}
  ~BackgroundWorker() { stop(); }
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  // Queues a job; false (and the job is not run) when max_waiting jobs wait already or stopped.
  bool post(std::function<void()> job) {
    std::lock_guard<std::mutex> g(mu_);
    if (stopping_ || jobs_.size() >= max_waiting_) return false;
    jobs_.push_back(std::move(job));
    cv_.notify_one();
    return true;
  }
  // Runs the jobs already queued, then joins the thread; idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      try {
        job();
      } catch (...) {  // a job's failure is its own (jobs report errors themselves)
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t max_waiting_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace osd
