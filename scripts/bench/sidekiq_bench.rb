# The Sidekiq side of scripts/bench.sh. Prints one JSON line.
#
#   REDIS_URL=redis://127.0.0.1:PORT ruby scripts/bench/sidekiq_bench.rb MODE JOBS
#
# MODE enqueue: push JOBS no-op jobs with Sidekiq::Client.push_bulk, in
#   batches of BATCH (default 1,000), no Sidekiq process running.
# MODE drain: the jobs are already queued and Sidekiq processes are starting;
#   time until the queue is empty. steady_per_s counts from the first job
#   taken off the queue (so process boot is excluded).
# MODE e2e: Sidekiq processes are running and idle; push JOBS with push_bulk
#   and time until the queue is empty.
#
# "Empty" is when the last job was fetched: at most processes x concurrency
# no-op jobs (microseconds each) are still running then; that slack favours
# Sidekiq. Every mode but enqueue then waits for Sidekiq's processed counter
# (flushed by each process's heartbeat, every 5 s) to reach JOBS, so a run in
# which jobs failed or were lost is reported as such, not as fast.
require_relative "noop_job"
require "sidekiq/api"
require "json"

mode = ARGV.fetch(0)
jobs = Integer(ARGV.fetch(1))
batch = Integer(ENV.fetch("BATCH", "1000"))
timeout = Float(ENV.fetch("TIMEOUT", "600"))
mono = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
queue = Sidekiq::Queue.new("default")
# drain starts right after the processes: their first heartbeat may already
# have counted jobs, so the caller says where the counter started.
processed_before = ENV["PROCESSED_BEFORE"]&.to_i || Sidekiq::Stats.new.processed

push = lambda do
  left = jobs
  while left > 0
    n = [left, batch].min
    Sidekiq::Client.push_bulk("class" => NoopJob, "args" => Array.new(n) { [] })
    left -= n
  end
end

wait_empty = lambda do |started|
  first = nil
  loop do
    size = queue.size
    first ||= mono.call if size < jobs
    return [mono.call, first] if size.zero?
    raise "timed out with #{size} jobs left" if mono.call - started > timeout
    sleep 0.002
  end
end

confirm = lambda do
  deadline = mono.call + 20
  loop do
    processed = Sidekiq::Stats.new.processed - processed_before
    return processed if processed >= jobs || mono.call > deadline
    sleep 0.2
  end
end

out = {mode: mode, jobs: jobs}
case mode
when "enqueue"
  Sidekiq.redis { |c| c.ping } # connect before the clock starts
  started = mono.call
  push.call
  seconds = mono.call - started
  out.merge!(seconds: seconds.round(4), per_s: (jobs / seconds).round)
when "drain"
  started = mono.call
  ended, first = wait_empty.call(started)
  out.merge!(seconds: (ended - started).round(4), first_take_s: first && (first - started).round(4),
             steady_per_s: first && (jobs / [ended - first, 1e-9].max).round)
  out[:processed] = confirm.call
when "e2e"
  Sidekiq.redis { |c| c.ping }
  started = mono.call
  push.call
  enqueued = mono.call
  ended, = wait_empty.call(started)
  out.merge!(seconds: (ended - started).round(4), enqueue_s: (enqueued - started).round(4),
             per_s: (jobs / (ended - started)).round)
  out[:processed] = confirm.call
else
  abort "mode is enqueue, drain or e2e"
end
out[:failed] = Sidekiq::Stats.new.failed
puts JSON.generate(out)
