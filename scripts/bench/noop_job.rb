# The Sidekiq side of scripts/bench.sh: a no-op job class, loaded by
#   sidekiq -r ./scripts/bench/noop_job.rb -c 10 -q default
# and by the enqueue and drain helpers. Redis comes from REDIS_URL.
#
# Sidekiq logs a "start" and a "done" line per job by default; the logger is
# set to WARN so that per-job logging, which jobfleet's worker does not do,
# is not counted against Sidekiq (this favours Sidekiq in the comparison).
require "sidekiq"

Sidekiq.logger.level = Logger::WARN
# redis-rb 4.8 warns on every SADD Sidekiq 6.4's push makes (its return type
# changes in redis-rb 5); the warning is noise, and printing it costs time.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

class NoopJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform; end
end
