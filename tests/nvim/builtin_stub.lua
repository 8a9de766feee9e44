--- Headless Neovim 0.11 driving the plugin's Neovim 0.12 path against a stand-in for the built-in.
---
--- Neovim 0.12 is not installable here, so `vim.lsp.inline_completion` is a stub with the public
--- API of Neovim's runtime/lua/vim/lsp/inline_completion.lua (0.12): `enable(enable, filter)`
--- (`bufnr` and `client_id` are mutually exclusive there, as asserted here), `is_enabled`,
--- `select({ bufnr, count })` and `get({ bufnr, on_accept })`, which returns false when no item
--- is shown, else hides the item and, scheduled, calls `on_accept(item)` (or inserts it whole).
--- The server is an in-process fake (`cmd` as a function) that advertises inline completion,
--- so no model is loaded. The plugin must enable the built-in per buffer, map its keys, and make
--- accept-word / accept-line / dismiss out of `get()`'s `on_accept`. The report (JSON) goes to
--- tests/test_nvim_plugin.py; errors are recorded there, never raised.
---
--- Usage: LIVEKV_E2E_CONFIG=CONFIG.json nvim --clean -n --headless --cmd 'set rtp^=editors/nvim' -S THIS
--- CONFIG: { file, out, typed, item, wait_ms }

local config = vim.json.decode(table.concat(vim.fn.readfile(assert(os.getenv('LIVEKV_E2E_CONFIG'))), '\n'))

local report = { nvim = tostring(vim.version()), calls = {}, errors = {}, steps = {} }

-- The stand-in for Neovim 0.12's vim.lsp.inline_completion ---------------------------------------

local stub = { current = nil } ---@type { current: table? } the item "shown"
local enabled = {} ---@type table<integer, boolean> per buffer

---@param name string
---@param args table
local function record(name, args)
  table.insert(report.calls, { name = name, args = args })
end

function stub.enable(enable, filter)
  filter = filter or {}
  assert(not (filter.bufnr and filter.client_id), '`bufnr` and `client_id` are mutually exclusive.')
  record('enable', { enable = enable ~= false, bufnr = filter.bufnr or vim.NIL, client_id = filter.client_id or vim.NIL })
  if filter.bufnr then
    enabled[filter.bufnr] = enable ~= false
  end
end

function stub.is_enabled(filter)
  return enabled[(filter or {}).bufnr or vim.api.nvim_get_current_buf()] == true
end

function stub.select(opts)
  record('select', { bufnr = opts.bufnr or vim.NIL, count = opts.count or vim.NIL })
end

function stub.get(opts)
  opts = opts or {}
  record('get', { bufnr = opts.bufnr or vim.NIL, on_accept = opts.on_accept ~= nil, shown = stub.current ~= nil })
  local item = stub.current
  if not item then
    return false
  end
  vim.schedule(function()
    stub.current = nil -- the built-in's abort(): hidden, pending requests cancelled
    if opts.on_accept then
      opts.on_accept(item)
    else -- its default accept: the range replaced by the whole text, the cursor at its end
      local r = item.range
      local lines = vim.split(item.insert_text, '\n', { plain = true })
      vim.api.nvim_buf_set_text(0, r.start.row, r.start.col, r.end_.row, r.end_.col, lines)
      vim.api.nvim_win_set_cursor(0, { r.start.row + #lines, (#lines == 1 and r.start.col or 0) + #lines[#lines] })
    end
    _G.livekv_stub_accepted = (_G.livekv_stub_accepted or 0) + 1
  end)
  return true
end

vim.lsp.inline_completion = stub

-- A fake server on the client's own RPC interface -------------------------------------------

---@param dispatchers vim.lsp.rpc.Dispatchers
local function fake_server(dispatchers)
  local closing, last = false, 0
  return {
    request = function(method, _, callback, notify_reply_callback)
      last = last + 1
      local id = last
      local result = vim.NIL
      if method == 'initialize' then
        result = { capabilities = { inlineCompletionProvider = true, textDocumentSync = 1 } }
      end
      vim.schedule(function()
        callback(nil, result)
        if notify_reply_callback then
          notify_reply_callback(id)
        end
      end)
      return true, id
    end,
    notify = function(method)
      if method == 'exit' then
        closing = true
        vim.schedule(function()
          dispatchers.on_exit(0, 0)
        end)
      end
      return true
    end,
    is_closing = function()
      return closing
    end,
    terminate = function()
      closing = true
    end,
  }
end

-- Driving ---------------------------------------------------------------------------------

local bufnr ---@type integer

--- Yield until `cond()` is true (polled every 10 ms) or `timeout_ms` passed; returns whether it held.
local function wait_until(timeout_ms, cond)
  local co = assert(coroutine.running())
  local started = vim.uv.now()
  local timer = assert(vim.uv.new_timer())
  timer:start(10, 10, vim.schedule_wrap(function()
    if timer:is_closing() then
      return
    end
    local ok = cond()
    if ok or vim.uv.now() - started > timeout_ms then
      timer:close()
      coroutine.resume(co, ok and true or false)
    end
  end))
  return coroutine.yield()
end

local sent = 0

--- Type `keys` (`nvim_input` notation) and wait until Neovim has handled them and what they scheduled.
local function press(keys)
  sent = sent + 1
  local accepted = _G.livekv_stub_accepted or 0
  vim.api.nvim_input(keys .. ('<Cmd>lua _G.livekv_stub_keys = %d<CR>'):format(sent))
  assert(wait_until(config.wait_ms, function()
    return _G.livekv_stub_keys == sent
  end), 'keys not handled: ' .. keys)
  if stub.current == nil and report.calls[#report.calls].name == 'get' and report.calls[#report.calls].args.shown then
    wait_until(config.wait_ms, function() -- the scheduled accept has run
      return (_G.livekv_stub_accepted or 0) > accepted
    end)
  end
end

--- Show the configured item again: its range is the typed partial word up to the cursor.
local function show(row)
  local item = vim.deepcopy(config.item)
  item.range = { start = { row = row, col = item.start_col }, end_ = { row = row, col = #config.typed } }
  stub.current = item
end

local function step(name)
  local cursor = vim.api.nvim_win_get_cursor(0)
  table.insert(report.steps, {
    name = name,
    lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true),
    cursor = { cursor[1] - 1, cursor[2] },
    mode = vim.api.nvim_get_mode().mode,
    shown = stub.current ~= nil,
    calls = #report.calls,
  })
end

local function main()
  local livekv = require('livekv')
  livekv.setup({ cmd = fake_server })
  vim.cmd.edit(vim.fn.fnameescape(config.file))
  bufnr = vim.api.nvim_get_current_buf()
  vim.cmd('setlocal indentexpr= noautoindent nosmartindent textwidth=0 noexpandtab')
  assert(wait_until(config.wait_ms, function()
    local id = livekv.client_id()
    return id and vim.lsp.buf_is_attached(bufnr, id) and #report.calls > 0
  end), 'the fake client did not attach')
  report.bufnr = bufnr
  report.status = livekv.status()
  report.maps = {}
  for _, map in ipairs(vim.api.nvim_buf_get_keymap(bufnr, 'i')) do
    report.maps[map.lhs] = map.desc or vim.NIL
  end

  local row = vim.api.nvim_buf_line_count(bufnr) -- the new line's row (0-based) after `G` `o`
  vim.api.nvim_input('Go' .. config.typed)
  assert(wait_until(config.wait_ms, function()
    return vim.api.nvim_get_current_line() == config.typed
  end), 'typing went wrong')
  step('typed')

  show(row)
  press('<C-Right>')
  step('word')
  show(row)
  press('<M-l>')
  step('line')
  show(row)
  press('<C-]>')
  step('dismissed')
  press('<Tab>') -- nothing shown: the key's own meaning
  step('tab_fallthrough')
  vim.api.nvim_input('<BS>')
  press('<M-]>')
  press('<M-[>')
  step('cycled')
  vim.api.nvim_input('<C-u>' .. config.typed)
  assert(wait_until(config.wait_ms, function()
    return vim.api.nvim_get_current_line() == config.typed
  end), 'retyping went wrong')
  show(row)
  press('<Tab>')
  step('accepted')

  livekv.toggle()
  livekv.toggle()
  step('toggled')
  vim.cmd('checkhealth livekv')
  report.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(coroutine.wrap(function()
      local ok, err = xpcall(main, debug.traceback)
      if not ok then
        table.insert(report.errors, err)
      end
      vim.fn.writefile({ vim.json.encode(report) }, config.out)
      vim.cmd('qa!')
    end))
  end,
})
